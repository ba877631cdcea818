"""Lines stored in compressed blocks: queries agree with a plain model, resent rows are
stored once, partitions of the previous version (a `logs` table) stay readable."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.query import LogQuery, matcher
from collector.record import Record
from collector.store import blocks
from collector.store.partitions import partition_path
from collector.store.schema import INSERT, LEGACY_SCHEMA, connect
from collector.store.sqlite import SqliteStore
from collector.store.writer import PartitionWriter
from tests.support.store import stored_rows

SPAN = 1_000  # a tiny partition span (µs), so random ids fall in several partitions
REGEXES = ["a", "^a", "b$", "\\Aab", "a\\z", "(?i)A B", "\\bab", "a.b", "[^x]+y", "^$", "x\ny",
           "b\\b", "(a|b)+$"]


def model_answer(records: list[Record], query: LogQuery) -> list[Record]:
    """What LogQuery promises, over a plain list of records in id order."""
    match = matcher(query)
    hits = [r for r in records if match(r)]
    if query.after is not None:
        return [r for r in hits if r.id > query.after][:query.limit]
    return hits[-query.limit:] if query.limit > 0 else []


@st.composite
def record_sets(draw: st.DrawFn) -> list[Record]:
    """Records with unique increasing ids and every column varied, None included."""
    count = draw(st.integers(min_value=0, max_value=60))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=400), min_size=count,
                         max_size=count))
    records: list[Record] = []
    record_id = draw(st.integers(min_value=1, max_value=3_000))
    for gap in gaps:
        record_id += gap
        request = draw(st.booleans())
        records.append(Record(
            record_id,
            draw(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))),
            draw(st.sampled_from(["a", "b"])), draw(st.sampled_from(["web.1", "web.2"])),
            draw(st.sampled_from(["127.0.0.1", "::1"])), draw(st.sampled_from(["crypto", "text"])),
            draw(st.text(alphabet="abxy \nAB", max_size=12)),
            draw(st.sampled_from(["log", "marker"])),
            "GET" if request else None, "/p" if request else None,
            draw(st.sampled_from([200, 404, 500])) if request else None,
            draw(st.floats(min_value=0, max_value=1e4)) if request else None,
            draw(st.integers(min_value=0, max_value=1 << 40)) if request else None,
            draw(st.one_of(st.none(), st.integers(min_value=1, max_value=1 << 31))),
            draw(st.one_of(st.none(), st.integers(min_value=0, max_value=64)))))
    return records


queries = st.builds(
    LogQuery,
    app=st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
    source=st.one_of(st.none(), st.sampled_from(["web.1", "web.2"])),
    since=st.one_of(st.none(), st.integers(min_value=0, max_value=30_000).map(lambda v: v / 1e6)),
    until=st.one_of(st.none(), st.integers(min_value=0, max_value=30_000).map(lambda v: v / 1e6)),
    regex=st.one_of(st.none(), st.sampled_from(REGEXES)),
    status=st.one_of(st.none(), st.sampled_from([200, 404])),
    status_class=st.one_of(st.none(), st.sampled_from([2, 4, 5])),
    after=st.one_of(st.none(), st.integers(min_value=0, max_value=30_000)),
    limit=st.integers(min_value=1, max_value=70))


def fields(record: Record) -> list[tuple[Any, type]]:
    """Every field with its type, so 1.0 and 1 or None and '' tell apart."""
    return [(value, type(value)) for value in record.row()]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(records=record_sets(), cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6),
       resend=st.integers(min_value=0, max_value=60), compact=st.booleans(),
       batch=st.lists(queries, min_size=1, max_size=5))
def test_queries_agree_with_a_plain_model(records: list[Record], cuts: list[int], resend: int,
                                          compact: bool, batch: list[LogQuery]) -> None:
    """Records committed in random groups (and a random tail of them committed again, as a
    new writer is given unacknowledged frames; small blocks merged or not) come back from
    `query` exactly as a plain list filtered by `matcher` gives them: same records, every
    field and type, same order."""
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        writer = PartitionWriter(logs, span_us=SPAN, retention_us=0, max_bytes=0)
        rows = [r.row() for r in records]
        bounds = sorted({0, len(rows), *(min(c, len(rows)) for c in cuts)})
        for low, high in itertools.pairwise(bounds):
            writer.commit(rows[low:high])
        if compact:
            writer.maintain(0)
        if rows:
            writer.reset()
            writer.commit(rows[max(0, len(rows) - resend):])
        writer.reset()
        assert [r[0] for r in stored_rows(logs)] == [r.id for r in records]
        store = SqliteStore(Path(tmp))
        for query in batch:
            got = asyncio.run(store.query(query))
            want = model_answer(records, query)
            assert [fields(r) for r in got] == [fields(r) for r in want], query


def legacy_partition(logs: Path, start: int, records: list[Record]) -> None:
    """A partition file as the previous version wrote it: a `logs` table of rows."""
    logs.mkdir(parents=True, exist_ok=True)
    with closing(connect(partition_path(logs, start))) as conn:
        conn.executescript(LEGACY_SCHEMA)
        conn.executemany(INSERT, [r.row() for r in records])


def old_record(record_id: int, app: str = "a", line: str = "old") -> Record:
    """A record with its request fields set, as an old partition would hold."""
    return Record(record_id, 12.5, app, "web.1", "h", "crypto", f"{line} {record_id}",
                  "log", "GET", "/x", 200, 1.5, 10, 7, 2)


async def test_partitions_of_the_previous_version_stay_readable(tmp_path: Path) -> None:
    """An upgraded collector reads the rows its previous version stored, continues after
    their last id, and answers queries over old rows and new blocks together."""
    hour = 3_600_000_000
    old = [old_record(i, app="a" if i % 2 else "b") for i in range(1, 41)]
    legacy_partition(tmp_path / "logs", 0, old[:30])
    # The newest old partition is also the one new lines go to after the upgrade.
    legacy_partition(tmp_path / "logs", hour, [old_record(hour + i) for i in range(1, 11)])
    store = SqliteStore(tmp_path)
    assert await store.open() == hour + 10
    new = [old_record(hour + i, line="new") for i in range(11, 21)]
    store.append(new)
    await store.flush()
    everything = old[:30] + [old_record(hour + i) for i in range(1, 11)] + new
    for query in (LogQuery(limit=1000), LogQuery(app="a", limit=5),
                  LogQuery(after=25, limit=12), LogQuery(regex="^old 1", limit=100),
                  LogQuery(status=200, until=(hour + 15) / 1e6, limit=8),
                  LogQuery(status_class=2, limit=7), LogQuery(status_class=5, limit=7)):
        assert await store.query(query) == model_answer(everything, query), query
    await store.close()
    with closing(sqlite3.connect(partition_path(tmp_path / "logs", hour))) as conn:
        # The new lines went into blocks beside the old table, not into it.
        assert conn.execute("SELECT count(*) FROM logs").fetchone() == (10,)
        assert conn.execute("SELECT sum(count) FROM blocks").fetchone() == (10,)


async def test_after_reads_only_the_blocks_past_the_cursor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Resuming a tail after a cursor decompresses the blocks past it, not the partition."""
    writer = PartitionWriter(tmp_path / "logs", span_us=3_600_000_000, retention_us=0,
                             max_bytes=0)
    (tmp_path / "logs").mkdir()
    for group in range(200):
        writer.commit([old_record(group * 10 + i).row() for i in range(1, 11)])
    writer.reset()
    decoded: list[int] = []
    real = blocks.decode_lines

    def counting(blob: bytes) -> Sequence[str]:
        decoded.append(1)
        return real(blob)

    monkeypatch.setattr(blocks, "decode_lines", counting)
    found = await SqliteStore(tmp_path).query(LogQuery(after=1975, limit=10))
    assert [r.id for r in found] == list(range(1976, 1986))
    assert len(decoded) <= 3
    decoded.clear()
    newest = await SqliteStore(tmp_path).query(LogQuery(limit=15))
    assert [r.id for r in newest] == list(range(1986, 2001))
    assert len(decoded) <= 3


def test_rows_resent_after_a_failed_commit_are_stored_once(tmp_path: Path) -> None:
    """A batch spanning two partitions is committed again whole (its first partition had
    committed): each row is stored once, and new rows in the batch are stored."""
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = PartitionWriter(logs, span_us=100, retention_us=0, max_bytes=0)
    first = [old_record(i).row() for i in (10, 20, 90)]
    writer.commit(first)
    writer.reset()
    writer.commit([old_record(i).row() for i in (5, 10, 20, 90, 150, 160)])
    writer.commit([old_record(i).row() for i in (150, 160, 170)])
    assert [r[0] for r in stored_rows(logs)] == [5, 10, 20, 90, 150, 160, 170]


@pytest.mark.parametrize("regex", [*REGEXES, "\\Ab", "y\\z", "(?m)^b", "(?s)a.b", "^b a$"])
async def test_a_regex_reads_each_line_of_a_block_alone(tmp_path: Path, regex: str) -> None:
    """Anchors and classes see each line on its own, as they do outside a block (the block
    is searched whole first, which must never hide a line's match)."""
    lines = ["zz", "ab", "b a", "x\ny", "xy", "", "A B", "a\nb", "yb", "ab\n"]
    records = [Record(i + 1, None, "a", "web.1", "h", "text", line)
               for i, line in enumerate(lines)]
    (tmp_path / "logs").mkdir()
    writer = PartitionWriter(tmp_path / "logs", span_us=3_600_000_000, retention_us=0,
                             max_bytes=0)
    writer.commit([r.row() for r in records])
    writer.reset()
    query = LogQuery(regex=regex, limit=100)
    assert await SqliteStore(tmp_path).query(query) == model_answer(records, query)


async def test_small_blocks_are_merged_and_read_the_same(tmp_path: Path) -> None:
    """A slow stream's one-line blocks are merged at maintenance into a few blocks per
    stream; every row is kept once and queries answer as before."""
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = PartitionWriter(logs, span_us=3_600_000_000, retention_us=0, max_bytes=0)
    records = [old_record(i, app="a" if i % 3 else "b") for i in range(1, 301)]
    for record in records:
        writer.commit([record.row()])
    assert writer.compact(0, max_rows=150) >= 150  # a bounded pass
    writer.maintain(0)
    with closing(sqlite3.connect(partition_path(logs, 0))) as conn:
        assert conn.execute("SELECT count(*), sum(count) FROM blocks").fetchone() == (2, 300)
    writer.reset()
    assert [r[0] for r in stored_rows(logs)] == list(range(1, 301))
    store = SqliteStore(tmp_path)
    for query in (LogQuery(app="b", limit=7), LogQuery(after=250, limit=20),
                  LogQuery(regex="old 29", status=200, limit=100)):
        assert await store.query(query) == model_answer(records, query), query
