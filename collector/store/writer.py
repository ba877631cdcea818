"""The store's writer process: takes batches of rows over a pipe and commits them as
compressed blocks (collector/store/blocks.py).

It runs apart from the collector so that SQLite's work never competes with the event loop
for Python's GIL (as a thread it did: at 50,000 lines/s the two threads' GIL hand-offs cost
more than the inserts). It reads whatever frames have arrived, waits at most one commit
interval for more (group commit), commits them as one transaction per partition, and
acknowledges. At end of input (the collector exited, even by kill -9) it commits what it
has and exits: a line the collector handed over is not lost with the collector.
"""

from __future__ import annotations

import argparse
import operator
import os
import select
import signal
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from collector.record import Row
from collector.server import gcpolicy
from collector.store import frames
from collector.store.blocks import (
    Columns,
    decode_columns,
    decode_lines,
    encode_block,
    encode_streams,
    last_id,
    record_at,
    stored_ids,
)
from collector.store.partitions import (
    Partition,
    expired,
    list_partitions,
    partition_path,
    partition_start,
)
from collector.store.schema import INSERT_BLOCK, SCHEMA, connect
from logwire.logsetup import configure_logging

log = structlog.get_logger("collector.store.writer")

_ID = operator.itemgetter(0)

MAINTENANCE_EVERY = 30.0
# Blocks of fewer rows are merged at maintenance, into blocks of up to COMPACT_TARGET rows,
# at most COMPACT_MAX_ROWS rows per pass (a bound on the pause it puts between commits).
COMPACT_BELOW = 128
COMPACT_TARGET = 4096
COMPACT_MAX_ROWS = 100_000
# Backoff between attempts at a failing commit.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0
# How long rows that cannot be written are retried after the collector vanished (end of
# input without QUIT: it was killed).
EOF_PATIENCE = 30.0


class PartitionWriter:
    """Commits rows into partition files and applies retention (no pipes, no clock)."""

    def __init__(self, directory: Path, *, span_us: int, retention_us: int,
                 max_bytes: int) -> None:
        self._dir = directory
        self._span = span_us
        self._retention = retention_us
        self._max_bytes = max_bytes
        self._connections: dict[int, sqlite3.Connection] = {}
        # The highest id stored in each open partition: rows above it are new.
        self._last: dict[int, int] = {}

    def commit(self, rows: Sequence[Row]) -> None:
        """Commit rows as blocks, one block per stream (app, source) and one transaction
        per partition they fall in; rows already stored are skipped."""
        if not rows:
            return
        span = self._span
        # Turned into columns once: the ids' range, the streams and the blocks read them.
        every = list(zip(*rows, strict=True))
        low, high = min(every[0]), max(every[0])
        columns: Columns | None = every
        groups: dict[int, Sequence[Row]]
        if partition_start(low, span) == partition_start(high, span):
            # The common case, without a Python step per row: one partition.
            groups = {partition_start(low, span): rows}
        else:
            split: dict[int, list[Row]] = {}
            for row in rows:
                split.setdefault(partition_start(row[0], span), []).append(row)
            groups = dict(split)
            columns = None
        for start, given in groups.items():
            conn = self._connection(start)
            group = given
            last = self._last[start]
            first = low if len(groups) == 1 else min(row[0] for row in group)
            if first <= last:
                # Resent after a writer died or a commit failed: rows an earlier commit
                # stored (a rare path, so it may read the recent blocks back).
                seen = stored_ids(conn, first)
                group = [row for row in group if row[0] not in seen]
                if not group:
                    continue
                columns = None
            params = encode_streams(group, columns)
            conn.execute("BEGIN")
            try:
                conn.executemany(INSERT_BLOCK, params)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._last[start] = max(last, *(p[1] for p in params))

    def _connection(self, start: int) -> sqlite3.Connection:
        conn = self._connections.get(start)
        if conn is None:
            conn = connect(partition_path(self._dir, start))
            try:
                conn.executescript(SCHEMA)
                self._last[start] = last_id(conn)
            except BaseException:
                conn.close()
                raise
            self._connections[start] = conn
            # Only the newest two partitions take writes; close the rest.
            for old in sorted(self._connections)[:-2]:
                self._connections.pop(old).close()
                self._last.pop(old, None)
        return conn

    def reset(self) -> None:
        """Close every connection (after an error, to start afresh)."""
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
        # Read again from the files: a commit that failed may have stored its rows.
        self._last.clear()

    def maintain(self, now_us: int) -> list[Partition]:
        """Delete expired partitions (returned), then compact the open ones."""
        partitions = list_partitions(self._dir)
        sizes = [sum(f.stat().st_size for f in p.files() if f.exists()) for p in partitions]
        doomed = expired(partitions, sizes, now_us=now_us, retention_us=self._retention,
                         max_bytes=self._max_bytes)
        for partition in doomed:
            conn = self._connections.pop(partition.start, None)
            self._last.pop(partition.start, None)
            if conn is not None:
                conn.close()
            for path in partition.files():
                path.unlink(missing_ok=True)
        for start in sorted(self._connections):
            self.compact(start)
        return doomed

    def compact(self, start: int, *, max_rows: int = COMPACT_MAX_ROWS) -> int:
        """Merge an open partition's small blocks, stream by stream, into blocks of up to
        COMPACT_TARGET rows (a slow stream commits a few lines at a time, and small blocks
        compress poorly and cost a query one step each); at most `max_rows` rows per call.
        Returns the rows moved. Readers keep seeing every row once: they read a partition
        in one transaction, before or after this one."""
        conn = self._connections.get(start)
        if conn is None:
            return 0
        streams: dict[tuple[str, str], list[tuple[int, int, bytes, bytes]]] = {}
        for rowid, app, source, count, lines, columns in conn.execute(
                "SELECT rowid, app, source, count, lines, columns FROM blocks"
                " WHERE count < ? ORDER BY first_id", (COMPACT_BELOW,)):
            streams.setdefault((app, source), []).append((rowid, count, lines, columns))
        moved = 0
        for (app, source), small in streams.items():
            if len(small) < 2 or moved >= max_rows:
                continue
            rows: list[Row] = []
            for _, _, lines_blob, columns_blob in small:
                lines, columns = decode_lines(lines_blob), decode_columns(columns_blob)
                rows.extend(record_at(app, source, lines, columns, i).row()
                            for i in range(len(lines)))
            rows.sort(key=_ID)
            params = [encode_block(rows[i:i + COMPACT_TARGET])
                      for i in range(0, len(rows), COMPACT_TARGET)]
            conn.execute("BEGIN")
            try:
                conn.executemany("DELETE FROM blocks WHERE rowid = ?",
                                 [(entry[0],) for entry in small])
                conn.executemany(INSERT_BLOCK, params)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            moved += len(rows)
        return moved


class WriterLoop:
    """Reads frames from `fd_in`, commits, acknowledges on `fd_out`.

    Frames are handled strictly in order: a FLUSH is answered, and QUIT obeyed, only once
    every ROWS frame before it is committed. A failed commit keeps its rows at the head of
    the queue and is retried with backoff; meanwhile the loop goes on reading frames (the
    collector's queue bound limits how many), running maintenance on its schedule (which
    may free the space it needs) and watching for QUIT. After QUIT it tries once more and
    then gives up on what cannot be written, saying how many rows that was.
    """

    def __init__(self, writer: PartitionWriter, fd_in: int, fd_out: int, *,
                 batch_max: int, commit_interval: float,
                 eof_patience: float = EOF_PATIENCE,
                 maintenance_every: float | None = None) -> None:
        self._writer = writer
        self._in = fd_in
        self._out = fd_out
        self._reader = frames.FrameReader()
        self._batch_max = batch_max
        self._interval = commit_interval
        self._eof_patience = eof_patience
        self._maintenance_every = (MAINTENANCE_EVERY if maintenance_every is None
                                   else maintenance_every)
        self._queue: deque[tuple[bytes, Any]] = deque()
        # Rows in the queue's ROWS frames, kept as frames come and go (summing the queue
        # at every read made a backlog cost the square of its frames).
        self._queued = 0
        self._eof = False
        self._quit = False
        # While commits fail: when the failure began, attempts so far, the next attempt.
        self._failing_since: float | None = None
        self._attempts = 0
        self._retry_at = 0.0
        self._give_up_at: float | None = None

    def _read(self, timeout: float | None) -> None:
        if self._eof:
            return
        ready, _, _ = select.select([self._in], [], [], timeout)
        if not ready:
            return
        data = os.read(self._in, 1 << 20)
        if not data:
            self._eof = True
            now = time.monotonic()
            # With no collector left, rows that cannot be written are retried for a
            # while (the disk may come back), not for ever.
            self._give_up_at = now if self._quit else now + self._eof_patience
            return
        for frame in self._reader.feed(data):
            self._queue.append(frame)
            if frame[0] == frames.ROWS:
                self._queued += len(frame[1])
            if frame[0] == frames.QUIT:
                self._quit = True
                # One more attempt at once, then give up: the collector is shutting down.
                self._retry_at = 0.0
                self._give_up_at = time.monotonic()

    def _send(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            try:
                written = os.write(self._out, view)
            except BrokenPipeError:
                return  # the collector is gone; committing is all that is left to do
            view = view[written:]

    def run(self) -> None:
        """Until QUIT or end of input (or, while commits fail, until giving up)."""
        next_maintenance = time.monotonic() + self._maintenance_every
        last_commit = 0.0
        while True:
            now = time.monotonic()
            if now >= next_maintenance:
                self._maintain()
                next_maintenance = time.monotonic() + self._maintenance_every
                continue
            if self._eof and not self._queue:
                return
            failing = self._failing_since is not None
            if not self._queue or (failing and now < self._retry_at):
                # Nothing to do before the next frame, retry or maintenance: wait for
                # whichever comes first. Any frame (a FLUSH, QUIT) wakes the select.
                wake = min(next_maintenance, self._retry_at) if failing else next_maintenance
                if self._eof:
                    time.sleep(max(0.0, wake - now))
                else:
                    self._read(max(0.0, wake - now))
                continue
            if not failing:
                # Group commit: let rows gather for up to one interval after the last
                # commit, so a busy collector writes hundreds of rows per transaction.
                pause = last_commit + self._interval - now
                if pause > 0 and not self._eof:
                    time.sleep(pause)
                while (not self._eof and self._queued_rows() <= self._batch_max
                       and select.select([self._in], [], [], 0)[0]):
                    self._read(0)
            if self._step():
                return
            last_commit = time.monotonic()

    def _queued_rows(self) -> int:
        return self._queued

    def _step(self) -> bool:
        """Commit the ROWS frames at the head of the queue (whole frames, about batch_max
        rows), then answer the FLUSH frames that follow; True when QUIT is reached or the
        loop gives up."""
        queue = self._queue
        rows: list[Row] = []
        count = 0
        for kind, payload in queue:
            if kind != frames.ROWS or (rows and len(rows) + len(payload) > self._batch_max):
                break
            rows.extend(payload)
            count += 1
        if rows:
            if not self._commit(rows, count):
                return self._give_up_due()
            for _ in range(count):
                queue.popleft()
            self._queued -= len(rows)
        while queue and queue[0][0] != frames.ROWS:
            kind, payload = queue.popleft()
            if kind == frames.FLUSH:
                self._send(frames.encode(frames.FLUSHED, payload))
            elif kind == frames.QUIT:
                return True
        return False

    def _commit(self, rows: list[Row], frame_count: int) -> bool:
        """One attempt at the rows of `frame_count` frames; True once they are committed
        and acknowledged."""
        started = time.perf_counter()
        try:
            self._writer.commit(rows)
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc, len(rows))
            return False
        elapsed = time.perf_counter() - started
        if self._failing_since is not None:
            log.warning("store_write_recovered", attempts=self._attempts,
                        failed_for=round(time.monotonic() - self._failing_since, 3))
            self._failing_since = None
            self._attempts = 0
        self._send(frames.encode(frames.COMMITTED,
                                 (rows[-1][0], len(rows), elapsed, frame_count)))
        return True

    def _failed(self, exc: BaseException, rows: int) -> None:
        """Keep the rows, schedule the next attempt, tell the collector."""
        # A full disk or a locked file passes: the rows are kept (the commit is idempotent,
        # so a partition that did commit is not written twice) and tried again.
        now = time.monotonic()
        self._writer.reset()
        self._attempts += 1
        if self._failing_since is None:
            self._failing_since = now
        delay = min(RETRY_FIRST * 2 ** (self._attempts - 1), RETRY_MAX)
        self._retry_at = now + delay
        # Logged when writes start failing and then at every doubling, not per attempt.
        if self._attempts & (self._attempts - 1) == 0:
            log.error("store_write_failed", error=str(exc), rows=rows,
                      attempts=self._attempts, retry_in=delay,
                      queued_rows=self._queued_rows())
        self._send(frames.encode(frames.FAILED, (str(exc), rows, self._attempts)))

    def _give_up_due(self) -> bool:
        """After a failed commit: True (and the loss logged) if it is time to give up."""
        if self._give_up_at is None or time.monotonic() < self._give_up_at:
            return False
        log.error("store_rows_lost", rows=self._queued_rows(),
                  reason="the collector is shutting down and writes still fail"
                  if self._quit else "the collector is gone and writes still fail")
        return True

    def _maintain(self) -> None:
        try:
            for partition in self._writer.maintain(int(time.time() * 1e6)):
                log.info("partition_deleted", partition=partition.path.name)
        except (OSError, sqlite3.Error) as exc:
            log.error("store_maintenance_failed", error=str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m collector.store.writer DIR ...`, started by SqliteStore."""
    parser = argparse.ArgumentParser(prog="collector-store-writer")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--span-us", type=int, required=True)
    parser.add_argument("--retention-us", type=int, default=0)
    parser.add_argument("--max-bytes", type=int, default=0)
    parser.add_argument("--batch-max", type=int, default=20_000)
    parser.add_argument("--commit-interval", type=float, default=0.005)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="console")
    args = parser.parse_args(argv)
    # Ctrl-C and a service manager's SIGTERM reach the whole process group; the writer
    # leaves shutdown to the collector, which flushes and then closes the pipe.
    # SIGHUP too: a reload is the collector's business, and a hang-up sent to the whole
    # group (a closed terminal, `timeout`, `kill -HUP -PGID`) must not kill the writer.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    configure_logging(args.log_level, args.log_format)
    # Rows wait in the queue for up to one commit interval: with CPython's default
    # thresholds a generation-0 pass ran at nearly every commit under load, scanning and
    # promoting rows about to be freed (13 % of the writer at 100,000 lines/s). Rows and
    # blocks form no cycles; reference counting frees them (collector.server.gcpolicy).
    gcpolicy.apply()
    writer = PartitionWriter(args.directory, span_us=args.span_us,
                             retention_us=args.retention_us, max_bytes=args.max_bytes)
    loop = WriterLoop(writer, sys.stdin.fileno(), sys.stdout.fileno(),
                      batch_max=args.batch_max, commit_interval=args.commit_interval)
    os.write(sys.stdout.fileno(), frames.encode(frames.READY, os.getpid()))
    try:
        loop.run()
    finally:
        writer.reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
