"""The embedded store: SQLite partitions in WAL mode, written by one thread in batches.

The event loop only queues records. A writer thread takes whatever has queued up since
its last commit (group commit: the busier the collector, the bigger each transaction) and
commits it; with WAL and synchronous=NORMAL a committed transaction survives the process
being killed. Readers run in worker threads with their own connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import cast

import structlog

from collector.errors import StoreError
from collector.metrics import BATCH_BUCKETS, Histogram
from collector.query import LogQuery
from collector.record import COLUMNS, Record, Row
from collector.regex import compile_regex
from collector.store.base import StoreStats
from collector.store.partitions import (
    Partition,
    expired,
    list_partitions,
    partition_path,
    partition_start,
)

log = structlog.get_logger("collector.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    emitted_at REAL,
    app TEXT NOT NULL,
    source TEXT NOT NULL,
    host TEXT NOT NULL,
    format TEXT NOT NULL,
    kind TEXT NOT NULL,
    line TEXT NOT NULL,
    method TEXT,
    path TEXT,
    status INTEGER,
    msecs REAL,
    size INTEGER,
    pid INTEGER,
    worker INTEGER
);
CREATE INDEX IF NOT EXISTS logs_by_app ON logs (app, source, id);
"""
# Built from the fixed column list, never from input.
_INSERT = f"INSERT INTO logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"  # noqa: S608
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM logs"  # noqa: S608
_MAINTENANCE_EVERY = 30.0


class _Flush:
    """A marker in the write queue: resolved once everything before it is committed."""

    def __init__(self) -> None:
        self.done: concurrent.futures.Future[None] = concurrent.futures.Future()


_STOP = object()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA journal_size_limit=67108864")
    return conn


class SqliteStore:
    """Partitioned SQLite storage (see the module docstring)."""

    def __init__(self, data_dir: Path, *, partition_seconds: float = 3600.0,
                 retention_seconds: float = 7 * 86400.0, retention_bytes: int = 0,
                 max_queue: int = 1_000_000, batch_max: int = 20_000) -> None:
        self._dir = Path(data_dir) / "logs"
        self._span = int(partition_seconds * 1e6)
        self._retention = int(retention_seconds * 1e6)
        self._max_bytes = retention_bytes
        self._max_queue = max_queue
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writers: dict[int, sqlite3.Connection] = {}
        self._callbacks: list[tuple[asyncio.AbstractEventLoop, Callable[[int], None]]] = []
        self.batch_seconds = Histogram(BATCH_BUCKETS)
        # Written by the event loop thread only:
        self._appended = 0
        self._dropped = 0
        # Written by the writer thread only:
        self._committed = 0
        self._batches = 0
        self._partitions = 0
        self._bytes = 0
        self._failed_rows = 0

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> int:
        """Create the directory, check every partition opens, start the writer."""
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            last = self._last_id()
            self._refresh_sizes()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the store in {self._dir}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        return last

    def _last_id(self) -> int:
        for partition in reversed(list_partitions(self._dir)):
            with closing(_connect(partition.path)) as conn:
                conn.executescript(_SCHEMA)
                # A crash between creating a file and its first commit leaves it empty.
                row = conn.execute("SELECT max(id) FROM logs").fetchone()
                if row[0] is not None:
                    return int(row[0])
        return 0

    def on_commit(self, callback: Callable[[int], None]) -> None:
        """Call `callback(last_id)` in the current event loop after each commit."""
        self._callbacks.append((asyncio.get_running_loop(), callback))

    async def close(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        if self._thread is None:
            return
        await self.flush()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # -- writing ---------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> bool:
        """Queue records; False (and counted) when `max_queue` lines already wait."""
        if self._appended - self._committed - self._failed_rows >= self._max_queue:
            self._dropped += len(records)
            return False
        self._appended += len(records)
        self._queue.put(records)
        return True

    async def flush(self) -> None:
        """Wait until all records appended before this call are committed."""
        if self._thread is None:
            return
        marker = _Flush()
        self._queue.put(marker)
        await asyncio.wrap_future(marker.done)

    def _run(self) -> None:
        next_maintenance = time.monotonic() + _MAINTENANCE_EVERY
        while True:
            timeout = max(0.0, next_maintenance - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            batch: list[Record] = []
            markers: list[_Flush] = []
            stop = False
            while item is not None:
                if item is _STOP:
                    stop = True
                elif isinstance(item, _Flush):
                    markers.append(item)
                else:
                    batch.extend(cast("Sequence[Record]", item))
                if stop or len(batch) >= self._batch_max:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if batch:
                self._write(batch, stop_requested=stop)
            for marker in markers:
                marker.done.set_result(None)
            if stop:
                break
            if time.monotonic() >= next_maintenance:
                self._maintain()
                next_maintenance = time.monotonic() + _MAINTENANCE_EVERY
        for conn in self._writers.values():
            conn.close()
        self._writers.clear()

    def _write(self, batch: list[Record], *, stop_requested: bool) -> None:
        started = time.perf_counter()
        delay = 0.1
        while True:
            try:
                self._commit(batch)
                break
            except (sqlite3.Error, OSError) as exc:
                # Disk full or a locked file passes; keep the batch and try again rather than
                # lose it. Only a shutdown gives up, and says how much it lost.
                log.error("store_write_failed", error=str(exc), rows=len(batch),
                          retry_in=delay)
                for conn in self._writers.values():
                    conn.close()
                self._writers.clear()
                if stop_requested:
                    self._failed_rows += len(batch)
                    log.error("store_rows_lost_at_shutdown", rows=len(batch))
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        elapsed = time.perf_counter() - started
        self._committed += len(batch)
        self._batches += 1
        self.batch_seconds.observe(elapsed)
        last = batch[-1].id
        for loop, callback in self._callbacks:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(callback, last)

    def _commit(self, batch: list[Record]) -> None:
        span = self._span
        groups: dict[int, list[Row]] = {}
        for record in batch:
            groups.setdefault(partition_start(record.id, span), []).append(record.row())
        for start, rows in groups.items():
            conn = self._writer(start)
            conn.execute("BEGIN")
            try:
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _writer(self, start: int) -> sqlite3.Connection:
        conn = self._writers.get(start)
        if conn is None:
            path = partition_path(self._dir, start)
            conn = _connect(path)
            conn.executescript(_SCHEMA)
            self._writers[start] = conn
            self._partitions += 1
            # Only the newest two partitions take writes; close the rest.
            for old in sorted(self._writers)[:-2]:
                self._writers.pop(old).close()
        return conn

    # -- retention -------------------------------------------------------------------

    def _maintain(self) -> None:
        try:
            partitions = list_partitions(self._dir)
            sizes = [_size(p) for p in partitions]
            doomed = expired(partitions, sizes, now_us=int(time.time() * 1e6),
                             retention_us=self._retention, max_bytes=self._max_bytes)
            for partition in doomed:
                conn = self._writers.pop(partition.start, None)
                if conn is not None:
                    conn.close()
                for path in partition.files():
                    path.unlink(missing_ok=True)
                log.info("partition_deleted", partition=partition.path.name)
            self._refresh_sizes()
        except (OSError, sqlite3.Error) as exc:
            log.error("store_maintenance_failed", error=str(exc))

    def _refresh_sizes(self) -> None:
        partitions = list_partitions(self._dir)
        self._partitions = len(partitions)
        self._bytes = sum(_size(p) for p in partitions)

    def run_maintenance(self) -> None:
        """Apply retention now (the writer also does it every 30 s)."""
        self._maintain()

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
            found.extend(self._query_partition(partition, query, low=low, high=high,
                                               ascending=ascending, limit=want))
        if not ascending:
            found.reverse()
        return found

    def _query_partition(self, partition: Partition, query: LogQuery, *, low: int | None,
                         high: int | None, ascending: bool, limit: int) -> list[Record]:
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (("app", query.app), ("source", query.source),
                              ("status", query.status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if low is not None:
            clauses.append("id >= ?")
            params.append(low)
        if high is not None:
            clauses.append("id < ?")
            params.append(high)
        try:
            conn = sqlite3.connect(partition.path, timeout=30)
        except sqlite3.Error:
            return []  # deleted by retention between listing and opening
        with closing(conn):
            if query.regex is not None:
                pattern = compile_regex(query.regex)
                conn.create_function("matches", 1, lambda line: pattern.search(line) is not None,
                                     deterministic=True)
                clauses.append("matches(line)")
            where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
            order = "ASC" if ascending else "DESC"
            sql = f"{_SELECT}{where} ORDER BY id {order} LIMIT ?"
            try:
                rows = conn.execute(sql, (*params, limit)).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise
        return [Record.from_row(row) for row in rows]

    # -- figures ---------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Counters for /metrics (lists the partition files: call it per scrape, not per line)."""
        self._refresh_sizes()
        committed = self._committed
        return StoreStats(queued=max(0, self._appended - committed - self._failed_rows),
                          appended=self._appended, committed=committed,
                          dropped=self._dropped, batches=self._batches,
                          partitions=self._partitions, bytes_on_disk=self._bytes)


def _size(partition: Partition) -> int:
    total = 0
    for path in partition.files():
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _in_range(partitions: list[Partition], low: int | None, high: int | None, *,
              ascending: bool) -> Iterator[Partition]:
    """Partitions that may hold ids in [low, high), in the order to read them."""
    spans: list[Partition] = []
    for index, partition in enumerate(partitions):
        end = partitions[index + 1].start if index + 1 < len(partitions) else None
        if low is not None and end is not None and end <= low:
            continue
        if high is not None and partition.start >= high:
            continue
        spans.append(partition)
    return iter(spans if ascending else reversed(spans))
