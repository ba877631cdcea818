"""The embedded store: SQLite partitions in WAL mode, written by a separate process.

Lines are stored in compressed blocks, one per stream and commit (collector/store/blocks.py).

The event loop turns each loop iteration's new records into rows, packs them into one
frame and writes it to the writer process's pipe (collector/store/writer.py). The writer
commits in groups and acknowledges; acknowledgements drive `flush()` and the figures.
Frames stay in memory until acknowledged, so if the writer dies it is started again (with
backoff, for as long as the store is open) and given them once more; commits are
idempotent, so a frame committed just before its writer died is not stored twice.
Readers run in worker threads with their own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import sqlite3
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import structlog

from collector.errors import StoreError
from collector.metrics import BATCH_BUCKETS, histogram
from collector.query import LogQuery
from collector.record import Record
from collector.regex import compile_regex
from collector.store import frames
from collector.store.base import StoreStats
from collector.store.blocks import has_table, last_id, prefilter, scan_block
from collector.store.partitions import Partition, list_partitions
from collector.store.schema import SCHEMA, SELECT, connect

log = structlog.get_logger("collector.store")


# Bounds on waiting for the writer. Shutdown waits for the last flush while commits make
# progress, and gives up after FLUSH_STALL seconds without any (a full disk); then QUIT,
# which the writer answers within QUIT_WAIT, or it is killed.
FLUSH_STALL = 5.0
QUIT_WAIT = 5.0
READY_WAIT = 30.0
# A dead writer is restarted after RESTART_FIRST seconds, doubling up to RESTART_MAX while
# new writers keep dying young (within WRITER_SETTLED seconds of starting).
RESTART_FIRST = 0.5
RESTART_MAX = 30.0
WRITER_SETTLED = 30.0


class _AckProtocol(asyncio.Protocol):
    """Reads one writer process's acknowledgements."""

    def __init__(self, store: SqliteStore, process: subprocess.Popen[bytes]) -> None:
        self._store = store
        self._process = process
        self._reader = frames.FrameReader()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        for kind, payload in self._reader.feed(data):
            self._store._acknowledged(kind, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._store._writer_lost(self._process)


class SqliteStore:
    """Partitioned SQLite storage (see the module docstring)."""

    def __init__(self, data_dir: Path, *, partition_seconds: float = 3600.0,
                 retention_seconds: float = 7 * 86400.0, retention_bytes: int = 0,
                 max_queue: int = 1_000_000, batch_max: int = 20_000,
                 commit_interval: float = 0.005, log_level: str = "info",
                 log_format: str = "console") -> None:
        self._dir = Path(data_dir) / "logs"
        self._writer_args = [
            f"--span-us={int(partition_seconds * 1e6)}",
            f"--retention-us={int(retention_seconds * 1e6)}",
            f"--max-bytes={retention_bytes}", f"--batch-max={batch_max}",
            f"--commit-interval={commit_interval}", f"--log-level={log_level}",
            f"--log-format={log_format}"]
        self._max_queue = max_queue
        self.batch_seconds = histogram("collector_store_batch_seconds",
                                       "Time to write and commit one batch.", BATCH_BUCKETS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._pipe: asyncio.WriteTransport | None = None
        self._acks: asyncio.ReadTransport | None = None
        self._ack_protocol: _AckProtocol | None = None
        self._ready: asyncio.Future[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._restart_delay = RESTART_FIRST
        self._closing = False
        self._buffer: list[Record] = []
        self._scheduled = False
        # Frames not yet acknowledged, with their records (for `uncommitted`); flushes by
        # token.
        self._unacked: deque[tuple[list[Record], bytes]] = deque()
        self._flushes: dict[int, tuple[asyncio.Future[None], bytes]] = {}
        self._tokens = itertools.count(1)
        self._appended = 0
        self._committed = 0
        self._dropped = 0
        self._batches = 0
        self._write_failures = 0
        self._writes_failing = False
        self._last_write_failure = 0.0
        self.writer_restarts = 0

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> int:
        """Check the partitions open, start the writer; the highest committed id."""
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            last = await asyncio.to_thread(self._last_id)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store in {self._dir}: {exc}") from exc
        self._loop = asyncio.get_running_loop()
        await self._start_writer()
        return last

    def _last_id(self) -> int:
        for partition in reversed(list_partitions(self._dir)):
            with closing(connect(partition.path)) as conn:
                conn.executescript(SCHEMA)
                # A crash between creating a file and its first commit leaves it empty.
                found = last_id(conn)
                if found:
                    return found
        return 0

    async def _start_writer(self) -> None:
        """Start a writer process and hand it every frame not yet acknowledged."""
        loop = self._loop
        assert loop is not None
        try:
            # Popen returns once the child is forked; the handshake below is awaited.
            process = subprocess.Popen(  # noqa: ASYNC220
                [sys.executable, "-m", "collector.store.writer", str(self._dir),
                 *self._writer_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as exc:
            raise StoreError(f"cannot start the store writer: {exc}") from exc
        assert process.stdin is not None
        assert process.stdout is not None
        _grow_pipe(process.stdin.fileno())
        self._process = process
        self._started_at = loop.time()
        ready = self._ready = loop.create_future()
        pipe: asyncio.WriteTransport | None = None
        try:
            pipe, _ = await loop.connect_write_pipe(asyncio.Protocol, process.stdin)
            acks, protocol = await loop.connect_read_pipe(
                lambda: _AckProtocol(self, process), process.stdout)
            self._acks, self._ack_protocol = acks, protocol
            await asyncio.wait_for(ready, READY_WAIT)
        except BaseException as exc:
            if pipe is not None and not pipe.is_closing():
                pipe.abort()
            if isinstance(exc, TimeoutError):
                raise StoreError(f"the store writer did not start within {READY_WAIT:g} s"
                                 ) from None
            if isinstance(exc, OSError):
                raise StoreError(f"cannot talk to the store writer: {exc}") from exc
            raise
        finally:
            self._ready = None
        # The pipe is published only now, after the resend: frames shipped meanwhile
        # waited in `_unacked`, so the new writer gets every frame in order, and a flush
        # after all the rows it waits for.
        for _, frame in self._unacked:
            pipe.write(frame)
        for _, frame in self._flushes.values():
            pipe.write(frame)
        self._pipe = pipe

    async def close(self) -> None:
        """Commit what is queued, then stop the writer; every wait is bounded.

        Lines that could not be committed by then (writes failing, no writer) are
        reported in the log as lost, with their count.
        """
        if self._loop is None or self._closing:
            return
        if self._process is not None or self._restarting is not None:
            await self._flush_while_progressing()
        self._closing = True
        if self._restarting is not None:
            self._restarting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restarting
            self._restarting = None
        process, self._process = self._process, None
        if self._pipe is not None:
            if not self._pipe.is_closing():
                self._pipe.write(frames.encode(frames.QUIT, None))
            # The transport closes the pipe once what it holds is written.
            self._pipe.close()
            self._pipe = None
        elif process is not None and process.stdin is not None:
            # A writer caught starting has no pipe transport: end its input directly.
            with contextlib.suppress(OSError):
                process.stdin.close()
        if process is not None:
            await _reap(process, QUIT_WAIT)
        if self._ack_protocol is not None:
            # The writer's last acknowledgements are read before the pipe reports its end.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._ack_protocol.lost), 1.0)
        if self._acks is not None:
            self._acks.close()
        for done, _ in self._flushes.values():
            if not done.done():
                done.set_exception(StoreError("the store closed before committing"))
                done.exception()  # retrieved here: nobody may await it any more
        self._flushes.clear()
        lost = self._appended - self._committed
        if lost:
            log.error("store_lines_lost", lines=lost, reason="not committed at shutdown",
                      writes_failing=self._writes_failing)

    async def _flush_while_progressing(self) -> None:
        """flush(), given up on after FLUSH_STALL seconds in which nothing committed."""
        assert self._loop is not None
        task = self._loop.create_task(self.flush())
        seen = -1
        try:
            while seen != self._committed:
                seen = self._committed
                done, _ = await asyncio.wait({task}, timeout=FLUSH_STALL)
                if done:
                    return
            log.error("store_flush_timed_out", stalled_for=FLUSH_STALL,
                      uncommitted=self._appended - self._committed,
                      writes_failing=self._writes_failing)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await task

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> bool:
        """Queue records; False (and counted) when `max_queue` lines already wait."""
        if self._appended - self._committed >= self._max_queue:
            self._dropped += len(records)
            return False
        self._appended += len(records)
        self._buffer.extend(records)
        if not self._scheduled and self._loop is not None:
            # One frame per loop iteration: every datagram read in it shares the frame.
            self._scheduled = True
            self._loop.call_soon(self._ship)
        return True

    def _ship(self) -> None:
        self._scheduled = False
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        frame = frames.encode(frames.ROWS, [record.row() for record in batch])
        self._unacked.append((batch, frame))
        if self._pipe is not None and not self._pipe.is_closing():
            self._pipe.write(frame)

    def uncommitted(self) -> Iterator[Record]:
        """Records appended but not yet acknowledged as committed, in id order."""
        for records, _ in self._unacked:
            yield from records
        yield from self._buffer

    async def flush(self) -> None:
        """Wait until all records appended before this call are committed.

        Unbounded while writes fail (a caller that must not wait for ever bounds it, as
        `close` does); raises StoreError if the store closes first.
        """
        if self._loop is None or self._closing:
            return
        self._ship()
        token = next(self._tokens)
        frame = frames.encode(frames.FLUSH, token)
        done: asyncio.Future[None] = self._loop.create_future()
        self._flushes[token] = (done, frame)
        if self._pipe is not None and not self._pipe.is_closing():
            self._pipe.write(frame)
        try:
            await done
        finally:
            self._flushes.pop(token, None)

    def _acknowledged(self, kind: bytes, payload: Any) -> None:
        if kind == frames.COMMITTED:
            _last, count, seconds, frame_count = payload
            self._committed += count
            self._batches += 1
            self._writes_failing = False
            self.batch_seconds.observe(seconds)
            # By count, not by id: exactly the frames whose rows are committed.
            for _ in range(min(frame_count, len(self._unacked))):
                self._unacked.popleft()
        elif kind == frames.FLUSHED:
            entry = self._flushes.pop(payload, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(None)
        elif kind == frames.FAILED:
            # The writer logs the error; here it is counted for /metrics.
            self._write_failures += 1
            self._writes_failing = True
            self._last_write_failure = time.time()
        elif kind == frames.READY and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def _writer_lost(self, process: subprocess.Popen[bytes]) -> None:
        if self._closing or self._loop is None or process is not self._process:
            return  # shutting down, or a late word from a writer already replaced
        if self._ready is not None:
            # It died while starting: `_start_writer` fails and the restart loop goes on.
            if not self._ready.done():
                self._ready.set_exception(StoreError("the store writer exited on start"))
            return
        code = process.poll()
        lived = self._loop.time() - self._started_at
        if lived >= WRITER_SETTLED:
            self._restart_delay = RESTART_FIRST
        log.error("store_writer_died", exit_code=code, lived=round(lived, 3),
                  unacknowledged_frames=len(self._unacked),
                  note="starting a new writer and resending")
        if self._pipe is not None:
            # The pipe may have noticed the reader's end first and closed itself.
            if not self._pipe.is_closing():
                self._pipe.abort()
            self._pipe = None
        if self._restarting is None:
            self._restarting = self._loop.create_task(self._restart_writer(process))

    async def _restart_writer(self, dead: subprocess.Popen[bytes]) -> None:
        """Start new writers, with backoff, until one runs (for as long as the store is
        open); each attempt is counted in `writer_restarts`."""
        try:
            await _reap(dead, QUIT_WAIT)
            while not self._closing:
                delay = self._restart_delay
                self._restart_delay = min(delay * 2, RESTART_MAX)
                await asyncio.sleep(delay)
                self.writer_restarts += 1
                try:
                    await self._start_writer()
                except StoreError as exc:
                    log.error("store_writer_restart_failed", error=str(exc),
                              restarts=self.writer_restarts,
                              retry_in=self._restart_delay)
                    if self._process is not None:
                        await _reap(self._process, QUIT_WAIT)
                    continue
                log.warning("store_writer_restarted", restarts=self.writer_restarts,
                            resent_frames=len(self._unacked))
                return
        finally:
            self._restarting = None

    # -- reading ---------------------------------------------------------------------

    async def query(self, query: LogQuery) -> list[Record]:
        """Records matching `query`, read in a worker thread."""
        try:
            return await asyncio.to_thread(self._query, query)
        except sqlite3.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc

    def _query(self, query: LogQuery) -> list[Record]:
        partitions = list_partitions(self._dir)
        low = int(query.since * 1e6) if query.since is not None else None
        high = int(query.until * 1e6) if query.until is not None else None
        if query.after is not None:
            low = max(low or 0, query.after + 1)
        ascending = query.after is not None
        found: list[Record] = []
        for partition in _in_range(partitions, low, high, ascending=ascending):
            want = query.limit - len(found)
            if want <= 0:
                break
            found.extend(_query_partition(partition, query, low=low, high=high,
                                          ascending=ascending, limit=want))
        if not ascending:
            found.reverse()
        return found

    # -- figures ---------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Counters for /metrics (lists the partition files: call it per scrape, not per line)."""
        partitions = list_partitions(self._dir)
        size = 0
        for partition in partitions:
            for path in partition.files():
                with contextlib.suppress(FileNotFoundError):
                    size += path.stat().st_size
        return StoreStats(queued=self._appended - self._committed, appended=self._appended,
                          committed=self._committed, dropped=self._dropped,
                          batches=self._batches, partitions=len(partitions),
                          bytes_on_disk=size, write_failures=self._write_failures,
                          writes_failing=self._writes_failing,
                          last_write_failure=self._last_write_failure,
                          writer_restarts=self.writer_restarts)


def _grow_pipe(fd: int) -> None:
    """Give the pipe to the writer room for a whole commit interval of rows.

    A default pipe holds 64 KiB, about 260 rows: at 50,000 lines/s it filled while the writer
    committed, and the two processes then passed rows along in 64 KiB steps, which capped
    the store below the listener's rate. Linux lets a pipe grow to fs.pipe-max-size (1 MiB
    by default) without privilege.
    """
    size = 1 << 20
    with contextlib.suppress(OSError, ValueError):
        size = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(size, 16 << 20))


async def _reap(process: subprocess.Popen[bytes], wait: float) -> None:
    """Wait up to `wait` seconds for a writer to exit, then kill it (and wait briefly)."""
    try:
        await asyncio.to_thread(process.wait, wait)
        return
    except subprocess.TimeoutExpired:
        log.error("store_writer_killed", pid=process.pid, waited=wait)
    with contextlib.suppress(OSError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(process.wait, 5)


def _query_partition(partition: Partition, query: LogQuery, *, low: int | None,
                     high: int | None, ascending: bool, limit: int) -> list[Record]:
    """The partition's `limit` first (ascending) or last matching records, in that order."""
    try:
        # mode=rw: a partition deleted by retention since it was listed must not be
        # created again, empty, by a reader. The URI needs the path quoted, or a `?`,
        # `#` or `%` in the data dir changes which file it names.
        conn = sqlite3.connect(f"file:{quote(str(partition.path.absolute()))}?mode=rw",
                               uri=True, timeout=30)
    except sqlite3.Error:
        return []
    with closing(conn):
        try:
            # One read transaction: the writer's compaction replaces blocks, and a reader
            # must see the partition wholly before or wholly after it.
            conn.execute("BEGIN")
            found: list[Record] = []
            if has_table(conn, "blocks"):
                found = _query_blocks(conn, query, low=low, high=high, ascending=ascending,
                                      limit=limit)
            if has_table(conn, "logs"):
                found.extend(_query_legacy(conn, query, low=low, high=high,
                                           ascending=ascending, limit=limit))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
    found.sort(key=_by_id, reverse=not ascending)
    return found[:limit]


def _by_id(record: Record) -> int:
    return record.id


def _filters(equal: dict[str, object], low: tuple[str, int | None],
             high: tuple[str, int | None]) -> tuple[list[str], list[object]]:
    """SQL clauses and their parameters: each column of `equal` whose value is not None
    equal to it, `low`'s column at or above its id and `high`'s below (column names are
    ours, never input)."""
    clauses: list[str] = []
    params: list[object] = []
    for column, value in equal.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    for (column, bound), operator in ((low, ">="), (high, "<")):
        if bound is not None:
            clauses.append(f"{column} {operator} ?")
            params.append(bound)
    return clauses, params


def _query_blocks(conn: sqlite3.Connection, query: LogQuery, *, low: int | None,
                  high: int | None, ascending: bool, limit: int) -> list[Record]:
    """Matching records from the partition's blocks: at least the `limit` first (or last)
    ones, reading blocks in the order of their first (or last) id and stopping once no
    further block can hold a record that belongs in the answer."""
    # A block may hold ids in [low, high) when its range reaches into it.
    clauses, params = _filters({"app": query.app, "source": query.source},
                               ("last_id", low), ("first_id", high))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "first_id ASC" if ascending else "last_id DESC"
    # The blobs are read block by block, once needed: sorting them along would copy every
    # matching block's data through SQLite's sorter (an app's blocks come in several
    # streams, so the index alone does not give their order).
    sql = (f"SELECT rowid, first_id, last_id, app, source FROM blocks{where}"  # noqa: S608
           f" ORDER BY {order}")
    search = joined = None
    if query.regex is not None:
        search = compile_regex(query.regex).search
        pre = prefilter(query.regex, compile_regex)
        joined = pre.search if pre is not None else None
    found: list[Record] = []
    bound: int | None = None  # the id of the `limit`-th record so far, once there are that many
    for rowid, first, last, app, source in conn.execute(sql, params).fetchall():
        if bound is not None and (first > bound if ascending else last < bound):
            break
        lines, columns = conn.execute("SELECT lines, columns FROM blocks WHERE rowid = ?",
                                      (rowid,)).fetchone()
        found.extend(scan_block(app, source, lines, columns, status=query.status,
                                status_class=query.status_class, low=low, high=high,
                                search=search, joined_search=joined))
        if len(found) >= limit:
            found.sort(key=_by_id, reverse=not ascending)
            del found[limit:]
            bound = found[-1].id
    return found


def _query_legacy(conn: sqlite3.Connection, query: LogQuery, *, low: int | None,
                  high: int | None, ascending: bool, limit: int) -> list[Record]:
    """Matching records from a `logs` table of rows, as partitions written before blocks
    hold them."""
    clauses, params = _filters({"app": query.app, "source": query.source,
                                "status": query.status}, ("id", low), ("id", high))
    if query.regex is not None:
        pattern = compile_regex(query.regex)
        conn.create_function("matches", 1, lambda line: pattern.search(line) is not None,
                             deterministic=True)
        clauses.append("matches(line)")
    if query.status_class is not None:
        clauses.append("status >= ? AND status < ?")
        params.extend((query.status_class * 100, query.status_class * 100 + 100))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "ASC" if ascending else "DESC"
    sql = f"{SELECT}{where} ORDER BY id {order} LIMIT ?"
    rows = conn.execute(sql, (*params, limit)).fetchall()
    return [Record.from_row(cast("Any", row)) for row in rows]


def _in_range(partitions: list[Partition], low: int | None, high: int | None, *,
              ascending: bool) -> list[Partition]:
    """Partitions that may hold ids in [low, high), in the order to read them."""
    spans: list[Partition] = []
    for index, partition in enumerate(partitions):
        end = partitions[index + 1].start if index + 1 < len(partitions) else None
        if low is not None and end is not None and end <= low:
            continue
        if high is not None and partition.start >= high:
            continue
        spans.append(partition)
    return spans if ascending else spans[::-1]
