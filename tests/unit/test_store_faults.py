"""The store under faults: failing commits, a writer dying, shutdown while writes fail.

The writer loop runs in a thread over real pipes and real partition files; a partition
is made unwritable by putting a directory where its file should be (SQLite then cannot
open it), which fails the commit as a full disk does and can be undone at will.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from collector.query import LogQuery
from collector.record import Record
from collector.store import frames
from collector.store import sqlite as sqlite_store
from collector.store import writer as writer_module
from collector.store.partitions import partition_path
from collector.store.sqlite import SqliteStore
from collector.store.writer import PartitionWriter, WriterLoop
from tests.support.store import stored_rows

HOUR = 3_600_000_000


def rec(record_id: int, line: str = "x") -> Record:
    """A record with the given id."""
    return Record(record_id, None, "a", "web.1", "127.0.0.1", "crypto", line)


def ids_in(directory: Path) -> list[int]:
    """Every stored id, straight from the partition files, duplicates included."""
    return [row[0] for row in stored_rows(directory)]


class WriterThread:
    """A WriterLoop in a thread, fed and read over real pipes."""

    def __init__(self, directory: Path, *, retention_us: int = 0) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._in_r, self._in_w = os.pipe()
        self._out_r, self._out_w = os.pipe()
        writer = PartitionWriter(directory, span_us=HOUR, retention_us=retention_us,
                                 max_bytes=0)
        self.loop = WriterLoop(writer, self._in_r, self._out_w, batch_max=20_000,
                               commit_interval=0.005)
        self._reader = frames.FrameReader()
        self.seen: list[tuple[bytes, Any]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.loop.run()
        finally:
            self.loop._writer.reset()

    def send(self, kind: bytes, payload: Any) -> None:
        """Write one frame to the writer."""
        os.write(self._in_w, frames.encode(kind, payload))

    def expect(self, kind: bytes, within: float = 10.0) -> Any:
        """Read frames until one of `kind` arrives; its payload. Fails after `within` s."""
        deadline = time.monotonic() + within
        while True:
            for index, (seen_kind, payload) in enumerate(self.seen):
                if seen_kind == kind:
                    del self.seen[index]
                    return payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} frame within {within}s; saw {self.seen}")
            ready, _, _ = select.select([self._out_r], [], [], left)
            if ready:
                self.seen.extend(self._reader.feed(os.read(self._out_r, 1 << 16)))

    def drain(self) -> list[bytes]:
        """The kinds of the frames received so far (without waiting)."""
        while select.select([self._out_r], [], [], 0)[0]:
            data = os.read(self._out_r, 1 << 16)
            if not data:
                break
            self.seen.extend(self._reader.feed(data))
        return [kind for kind, _ in self.seen]

    def close(self) -> None:
        """End of input; the thread is left to finish (it is a daemon)."""
        os.close(self._in_w)
        self.thread.join(10)
        for fd in (self._in_r, self._out_r, self._out_w):
            os.close(fd)


async def eventually(check: Callable[[], bool], within: float, what: str) -> None:
    """Poll `check` on the event loop until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


def block(directory: Path, start: int) -> Path:
    """Make the partition starting at `start` unwritable; returns what to remove."""
    path = partition_path(directory, start)
    path.mkdir(parents=True)
    return path


def test_commit_is_idempotent(tmp_path: Path) -> None:
    """Committing rows that are already committed (a resent frame) stores them once."""
    writer = PartitionWriter(tmp_path, span_us=HOUR, retention_us=0, max_bytes=0)
    rows = [rec(i).row() for i in (1, 2, HOUR + 1)]
    writer.commit(rows)
    writer.commit(rows)
    writer.reset()
    assert ids_in(tmp_path) == [1, 2, HOUR + 1]


def test_batch_whose_second_partition_fails_is_committed_once_when_it_can(
        tmp_path: Path) -> None:
    """A batch spanning two partitions, the second failing: the first partition commits,
    nothing is acknowledged, and once the second can be written the whole batch is
    acknowledged and every row stored exactly once (before the fix the retry hit the
    primary key of the first partition for ever)."""
    blocked = block(tmp_path, HOUR)
    writer = WriterThread(tmp_path)
    try:
        writer.send(frames.ROWS, [rec(i).row() for i in (HOUR - 2, HOUR - 1, HOUR, HOUR + 1)])
        writer.send(frames.FLUSH, 7)
        deadline = time.monotonic() + 10
        while ids_in(tmp_path) != [HOUR - 2, HOUR - 1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ids_in(tmp_path) == [HOUR - 2, HOUR - 1]
        time.sleep(0.3)
        assert frames.COMMITTED not in writer.drain()
        assert frames.FLUSHED not in writer.drain()
        blocked.rmdir()
        last, rows, _, frame_count = writer.expect(frames.COMMITTED)
        assert (last, rows, frame_count) == (HOUR + 1, 4, 1)
        assert writer.expect(frames.FLUSHED) == 7
        error, rows, attempts = writer.expect(frames.FAILED)
        assert rows == 4
        assert attempts == 1
        assert "unable to open" in error
    finally:
        writer.close()
    assert ids_in(tmp_path) == [HOUR - 2, HOUR - 1, HOUR, HOUR + 1]


def test_while_commits_fail_the_writer_reads_maintains_and_quits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Failing commits do not stop the loop: frames are still read, retention still
    deletes expired partitions on its schedule, and QUIT ends it within seconds (the
    rows it could not write are logged as lost, by count)."""
    old = PartitionWriter(tmp_path, span_us=HOUR, retention_us=0, max_bytes=0)
    old.commit([rec(5).row()])
    old.reset()
    block(tmp_path, 10 * HOUR)
    monkeypatch.setattr(writer_module, "MAINTENANCE_EVERY", 0.2)
    writer = WriterThread(tmp_path, retention_us=HOUR)
    with capture_logs() as logs:
        writer.send(frames.ROWS, [rec(10 * HOUR + 1).row()])
        time.sleep(0.3)
        writer.send(frames.ROWS, [rec(10 * HOUR + 2).row(), rec(10 * HOUR + 3).row()])
        deadline = time.monotonic() + 10
        while partition_path(tmp_path, 0).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not partition_path(tmp_path, 0).exists(), "retention did not run"
        writer.send(frames.QUIT, None)
        writer.thread.join(5)
        assert not writer.thread.is_alive(), "QUIT not obeyed while commits fail"
    writer.close()
    lost = [e for e in logs if e["event"] == "store_rows_lost"]
    assert [e["rows"] for e in lost] == [3]
    assert any(e["event"] == "partition_deleted" for e in logs)


async def test_frames_committed_but_never_acknowledged_are_stored_once(
        tmp_path: Path) -> None:
    """A writer killed between COMMIT and its acknowledgement leaves rows committed that
    the store resends to the next writer: they are neither refused for ever (the flush
    completes) nor stored twice."""
    first = SqliteStore(tmp_path)
    await first.open()
    first.append([rec(i) for i in range(1, 101)])
    await first.close()
    # The same records, unacknowledged as far as this store knows: what a store resends.
    second = SqliteStore(tmp_path)
    await second.open()
    second.append([rec(i) for i in range(1, 201)])
    try:
        await asyncio.wait_for(second.flush(), 10)
        assert second.stats().committed == 200
        assert list(second.uncommitted()) == []
    finally:
        await second.close()
    assert ids_in(tmp_path / "logs") == list(range(1, 201))


def fill_pipe(path: str) -> int:
    """Write acknowledgement frames nobody waits for into the pipe at `path` until it is
    full; how many bytes that took."""
    junk = frames.encode(frames.FLUSHED, -1)
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    written = 0
    try:
        while True:
            try:
                written += os.write(fd, junk)
            except BlockingIOError:
                return written
    finally:
        os.close(fd)


async def test_a_writer_killed_between_commit_and_ack_loses_and_doubles_nothing(
        tmp_path: Path) -> None:
    """The writer commits a frame and is killed -9 before its acknowledgement gets out
    (its ack pipe is full, so it is stuck right after COMMIT): the new writer gets the
    frame again, the flush completes, and every row is stored exactly once."""
    store = SqliteStore(tmp_path)
    await store.open()
    store.append([rec(i) for i in range(1, 101)])
    await asyncio.wait_for(store.flush(), 10)
    process, acks = store._process, store._acks
    assert process is not None
    assert acks is not None
    acks.pause_reading()
    assert fill_pipe(f"/proc/{process.pid}/fd/1") > 0
    store.append([rec(i) for i in range(101, 201)])
    await eventually(lambda: len(ids_in(tmp_path / "logs")) == 200, 10,
                     "the second frame committed")
    assert store.stats().committed == 100, "acknowledged although its pipe was full"
    process.kill()
    acks.resume_reading()
    await asyncio.wait_for(store.flush(), 15)
    assert store.writer_restarts == 1
    assert store.stats().committed == 200
    assert ids_in(tmp_path / "logs") == list(range(1, 201))
    await store.close()


async def test_close_is_bounded_while_writes_fail_and_reports_the_loss(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """close() while every commit fails returns within seconds, counts the failures
    for /metrics and logs how many lines were lost."""
    monkeypatch.setattr(sqlite_store, "FLUSH_STALL", 1.0, raising=False)
    store = SqliteStore(tmp_path)
    await store.open()
    block(tmp_path / "logs", 10 * HOUR)
    store.append([rec(10 * HOUR + i) for i in range(1, 4)])
    await asyncio.sleep(1.0)
    process = store._process
    assert process is not None
    with capture_logs() as logs:
        try:
            started = time.monotonic()
            await asyncio.wait_for(store.close(), 20)
            assert time.monotonic() - started < 15
        finally:
            if process.poll() is None:
                process.kill()
    assert process.poll() is not None
    lost = [e for e in logs if e["event"] == "store_lines_lost"]
    assert [e["lines"] for e in lost] == [3]
    stats = store.stats()
    assert stats.writes_failing
    assert stats.write_failures >= 1
    assert stats.last_write_failure > 0


async def test_a_writer_that_cannot_start_is_restarted_again_with_backoff(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the writer dies, new writers are started, with backoff, until one runs;
    each attempt is counted and the unacknowledged lines then get committed."""
    monkeypatch.setattr(sqlite_store, "RESTART_FIRST", 0.05, raising=False)
    store = SqliteStore(tmp_path)
    await store.open()
    good_args = list(store._writer_args)
    # A writer started with an option it does not know exits at once, before READY.
    store._writer_args.append("--no-such-option")
    assert store._process is not None
    store._process.kill()
    store.append([rec(i) for i in range(1, 51)])
    with capture_logs() as logs:
        try:
            await eventually(lambda: store.writer_restarts >= 3, 20, "three restarts")
        finally:
            store._writer_args[:] = good_args
        await asyncio.wait_for(store.flush(), 20)
    failed = [e for e in logs if e["event"] == "store_writer_restart_failed"]
    assert len(failed) >= 2
    assert any(e["event"] == "store_writer_restarted" for e in logs)
    assert store.stats().writer_restarts == store.writer_restarts
    assert [r.id for r in await store.query(LogQuery(after=0))] == list(range(1, 51))
    await store.close()


@pytest.mark.parametrize("name", ["a?b", "c#d", "e%41f", "all ?#% of them"])
async def test_queries_find_records_in_a_data_dir_with_uri_characters(
        tmp_path: Path, name: str) -> None:
    """A data dir whose path holds `?`, `#` or `%` is read correctly (readers open
    partitions by URI)."""
    store = SqliteStore(tmp_path / name)
    await store.open()
    store.append([rec(1), rec(2)])
    await store.flush()
    assert [r.id for r in await store.query(LogQuery())] == [1, 2]
    await store.close()

