"""The store's writer process: takes batches of rows over a pipe and commits them.

It runs apart from the collector so that SQLite's work never competes with the event loop
for Python's GIL (as a thread it did: at 50,000 lines/s the two threads' GIL hand-offs cost
more than the inserts). It reads whatever frames have arrived, waits at most one commit
interval for more (group commit), commits them as one transaction per partition, and
acknowledges. At end of input (the collector exited, even by kill -9) it commits what it
has and exits: a line the collector handed over is not lost with the collector.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from collector.record import Row
from collector.store import frames
from collector.store.partitions import (
    Partition,
    expired,
    list_partitions,
    partition_path,
    partition_start,
)
from collector.store.schema import INSERT, SCHEMA, connect
from logwire.logsetup import configure_logging

log = structlog.get_logger("collector.store.writer")

MAINTENANCE_EVERY = 30.0


class PartitionWriter:
    """Commits rows into partition files and applies retention (no pipes, no clock)."""

    def __init__(self, directory: Path, *, span_us: int, retention_us: int,
                 max_bytes: int) -> None:
        self._dir = directory
        self._span = span_us
        self._retention = retention_us
        self._max_bytes = max_bytes
        self._connections: dict[int, sqlite3.Connection] = {}

    def commit(self, rows: Sequence[Row]) -> None:
        """Commit rows, one transaction per partition they fall in."""
        groups: dict[int, list[Row]] = {}
        span = self._span
        for row in rows:
            groups.setdefault(partition_start(row[0], span), []).append(row)
        for start, group in groups.items():
            conn = self._connection(start)
            conn.execute("BEGIN")
            try:
                conn.executemany(INSERT, group)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _connection(self, start: int) -> sqlite3.Connection:
        conn = self._connections.get(start)
        if conn is None:
            conn = connect(partition_path(self._dir, start))
            conn.executescript(SCHEMA)
            self._connections[start] = conn
            # Only the newest two partitions take writes; close the rest.
            for old in sorted(self._connections)[:-2]:
                self._connections.pop(old).close()
        return conn

    def reset(self) -> None:
        """Close every connection (after an error, to start afresh)."""
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    def maintain(self, now_us: int) -> list[Partition]:
        """Delete expired partitions; return them."""
        partitions = list_partitions(self._dir)
        sizes = [sum(f.stat().st_size for f in p.files() if f.exists()) for p in partitions]
        doomed = expired(partitions, sizes, now_us=now_us, retention_us=self._retention,
                         max_bytes=self._max_bytes)
        for partition in doomed:
            conn = self._connections.pop(partition.start, None)
            if conn is not None:
                conn.close()
            for path in partition.files():
                path.unlink(missing_ok=True)
        return doomed


class WriterLoop:
    """Reads frames from `fd_in`, commits, acknowledges on `fd_out`."""

    def __init__(self, writer: PartitionWriter, fd_in: int, fd_out: int, *,
                 batch_max: int, commit_interval: float) -> None:
        self._writer = writer
        self._in = fd_in
        self._out = fd_out
        self._reader = frames.FrameReader()
        self._batch_max = batch_max
        self._interval = commit_interval
        self._pending: list[tuple[bytes, Any]] = []
        self._eof = False

    def _read(self, timeout: float | None) -> None:
        if self._eof:
            return
        ready, _, _ = select.select([self._in], [], [], timeout)
        if not ready:
            return
        data = os.read(self._in, 1 << 20)
        if not data:
            self._eof = True
            return
        self._pending.extend(self._reader.feed(data))

    def _send(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            try:
                written = os.write(self._out, view)
            except BrokenPipeError:
                return  # the collector is gone; committing is all that is left to do
            view = view[written:]

    def run(self) -> None:
        """Until QUIT or end of input."""
        next_maintenance = time.monotonic() + MAINTENANCE_EVERY
        last_commit = 0.0
        while True:
            if not self._pending:
                self._read(max(0.0, next_maintenance - time.monotonic()))
            if self._pending:
                # Group commit: let rows gather for up to one interval after the last
                # commit, so a busy collector writes hundreds of rows per transaction.
                pause = last_commit + self._interval - time.monotonic()
                if pause > 0 and not self._eof:
                    time.sleep(pause)
                while not self._eof and select.select([self._in], [], [], 0)[0]:
                    self._read(0)
                    if sum(len(p) for k, p in self._pending if k == frames.ROWS) > \
                            self._batch_max:
                        break
                quit_now = self._process()
                last_commit = time.monotonic()
                if quit_now:
                    return
            if self._eof and not self._pending:
                return
            if time.monotonic() >= next_maintenance:
                self._maintain()
                next_maintenance = time.monotonic() + MAINTENANCE_EVERY

    def _process(self) -> bool:
        """Commit the rows in hand, then answer flushes; True on QUIT."""
        pending, self._pending = self._pending, []
        rows: list[Row] = []
        flushes: list[int] = []
        quit_now = False
        for kind, payload in pending:
            if kind == frames.ROWS:
                rows.extend(payload)
            elif kind == frames.FLUSH:
                flushes.append(payload)
            elif kind == frames.QUIT:
                quit_now = True
        if rows:
            self._commit(rows)
        for token in flushes:
            self._send(frames.encode(frames.FLUSHED, token))
        return quit_now

    def _commit(self, rows: list[Row]) -> None:
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                self._writer.commit(rows)
                break
            except (sqlite3.Error, OSError) as exc:
                # A full disk or a locked file passes: keep the rows and try again rather
                # than lose them. The collector's queue bound protects its memory meanwhile.
                log.error("store_write_failed", error=str(exc), rows=len(rows),
                          retry_in=delay)
                self._writer.reset()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        elapsed = time.perf_counter() - started
        self._send(frames.encode(frames.COMMITTED, (rows[-1][0], len(rows), elapsed)))

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
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(args.log_level, args.log_format)
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
