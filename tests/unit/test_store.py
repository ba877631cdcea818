"""The SQLite store: group commit, queries, partitions and retention."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.query import LogQuery
from collector.record import Record
from collector.store.partitions import Partition, expired, list_partitions, partition_path
from collector.store.sqlite import SqliteStore
from collector.store.writer import PartitionWriter
from tests.support.store import stored_rows

HOUR = 3_600_000_000


def rec(record_id: int, line: str = "x", app: str = "a", source: str = "web.1",
        status: int | None = None) -> Record:
    """A record with the given id."""
    return Record(record_id, None, app, source, "127.0.0.1", "crypto", line, status=status)


async def test_append_flush_query_and_filters(tmp_path: Path) -> None:
    """What is appended and flushed is found again, filtered and in order."""
    store = SqliteStore(tmp_path)
    assert await store.open() == 0
    store.append([rec(10, "GET / 200", status=200), rec(11, "boom", app="b")])
    store.append([rec(12, "GET /x 500", status=500, source="web.2")])
    await store.flush()
    assert [r.id for r in await store.query(LogQuery())] == [10, 11, 12]
    assert [r.id for r in await store.query(LogQuery(app="a"))] == [10, 12]
    assert [r.id for r in await store.query(LogQuery(source="web.2"))] == [12]
    assert [r.id for r in await store.query(LogQuery(status=500))] == [12]
    assert [r.id for r in await store.query(LogQuery(regex=r"GET /\w* \d+"))] == [10, 12]
    assert [r.id for r in await store.query(LogQuery(limit=2))] == [11, 12]
    assert [r.id for r in await store.query(LogQuery(after=10, limit=1))] == [11]
    assert [r.id for r in await store.query(LogQuery(since=11e-6, until=12e-6))] == [11]
    found = (await store.query(LogQuery(status=500)))[0]
    assert found == rec(12, "GET /x 500", status=500, source="web.2")
    await store.close()
    assert store.stats().committed == 3


async def test_partitions_split_by_id_and_reopen(tmp_path: Path) -> None:
    """Records land in the partition of their hour; reopening finds the last id."""
    store = SqliteStore(tmp_path, partition_seconds=3600)
    await store.open()
    ids = [HOUR - 1, HOUR, 2 * HOUR + 5, 5 * HOUR]
    store.append([rec(i) for i in ids])
    await store.close()
    assert [p.start for p in list_partitions(tmp_path / "logs")] == [0, HOUR, 2 * HOUR,
                                                                     5 * HOUR]
    again = SqliteStore(tmp_path)
    assert await again.open() == 5 * HOUR
    assert [r.id for r in await again.query(LogQuery(after=0))] == ids
    assert [r.id for r in await again.query(LogQuery(limit=3))] == ids[1:]
    assert [r.id for r in await again.query(LogQuery(after=HOUR, limit=10))] == ids[2:]
    await again.close()


async def test_full_queue_refuses_and_counts(tmp_path: Path) -> None:
    """Past max_queue waiting lines, append says no and the lines are counted."""
    store = SqliteStore(tmp_path, max_queue=2)
    # Not opened: no writer drains the queue, so it stays full.
    assert store.append([rec(1), rec(2)])
    assert not store.append([rec(3)])
    assert store.stats().dropped == 1


def test_expiry_by_age_and_size() -> None:
    """Whole partitions go, oldest first, never the newest."""
    parts = [Partition(i * HOUR, Path(f"p{i}")) for i in range(4)]
    sizes = [100, 100, 100, 100]
    # Partition 0 ends at HOUR and partition 1 at 2*HOUR; retention keeps 1.5 hours before
    # now = 3.5 hours, so the cut is at 2 hours.
    kept_by_age = expired(parts, sizes, now_us=int(3.5 * HOUR), retention_us=int(1.5 * HOUR),
                          max_bytes=0)
    assert kept_by_age == parts[:2]
    by_size = expired(parts, sizes, now_us=0, retention_us=0, max_bytes=250)
    assert by_size == parts[:2]
    assert expired(parts, sizes, now_us=10**18, retention_us=1, max_bytes=0) == parts[:3]
    assert expired(parts[:1], sizes[:1], now_us=10**18, retention_us=1, max_bytes=1) == []


async def test_retention_deletes_files(tmp_path: Path) -> None:
    """The writer's maintenance removes expired partition files (and their WAL files),
    and readers then find only what is left."""
    store = SqliteStore(tmp_path)
    await store.open()
    store.append([rec(HOUR), rec(2 * HOUR), rec(10**15)])
    await store.close()
    writer = PartitionWriter(tmp_path / "logs", span_us=HOUR, retention_us=HOUR, max_bytes=0)
    deleted = writer.maintain(now_us=10**15 + 2 * HOUR)
    assert [p.start for p in deleted] == [HOUR, 2 * HOUR]
    left = list_partitions(tmp_path / "logs")
    assert [p.start for p in left] == [10**15 - 10**15 % HOUR]
    assert not partition_path(tmp_path / "logs", HOUR).exists()
    assert not (tmp_path / "logs" / (partition_path(tmp_path / "logs", HOUR).name + "-wal")
                ).exists()
    again = SqliteStore(tmp_path)
    await again.open()
    assert [r.id for r in await again.query(LogQuery(after=0))] == [10**15]
    await again.close()


async def test_a_dead_writer_is_replaced_and_loses_nothing(tmp_path: Path) -> None:
    """If the writer process dies, a new one gets every unacknowledged frame again."""
    store = SqliteStore(tmp_path)
    await store.open()
    store.append([rec(i) for i in range(1, 101)])
    await store.flush()
    assert store._process is not None
    store._process.kill()
    store.append([rec(i) for i in range(101, 201)])
    await asyncio.wait_for(store.flush(), 30)
    assert store.writer_restarts == 1
    assert [r.id for r in await store.query(LogQuery(after=0, limit=500))] == list(
        range(1, 201))
    await store.close()


async def test_integrity_after_close(tmp_path: Path) -> None:
    """The files pass SQLite's own integrity check."""
    store = SqliteStore(tmp_path)
    await store.open()
    store.append([rec(i, f"line {i}") for i in range(1, 2000)])
    await store.close()
    assert len(list_partitions(tmp_path / "logs")) == 1
    assert len(stored_rows(tmp_path / "logs", check=True)) == 1999


@pytest.mark.parametrize("bad", ["a(", "(?P<x"])
def test_query_matcher_rejects_nothing_it_was_given_checked(bad: str) -> None:
    """Regexes are checked by the API before they reach the store (regex_error)."""
    from collector.regex import regex_error

    assert regex_error(bad)
    assert regex_error(r"\d+") is None


async def test_uncommitted_until_acknowledged(tmp_path: Path) -> None:
    """Appended records are listed as uncommitted until the writer acknowledges them."""
    store = SqliteStore(tmp_path)
    await store.open()
    store.append([rec(1), rec(2)])
    store.append([rec(3)])
    assert [r.id for r in store.uncommitted()] == [1, 2, 3]
    await store.flush()
    assert list(store.uncommitted()) == []
    await store.close()
