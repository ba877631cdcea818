"""The writer's block encoding of a commit's rows, and the hand-off's counts of a batch:
the cheaper paths against the per-row (per-datagram) code they replace."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.config.model import ListenerConfig
from collector.decode.result import Lines
from collector.ingest import Ids, Ingest, Origin
from collector.listen.handoff import Handoff
from collector.listen.stats import ListenerStats
from collector.record import Record, Row
from collector.store import frames
from collector.store.blocks import (
    FEW_STREAMS,
    BlockParams,
    decode_columns,
    decode_lines,
    encode_block,
    encode_streams,
    record_at,
)
from collector.store.sqlite import SqliteStore
from collector.store.writer import PartitionWriter, WriterLoop

STREAMS = [("web", "a"), ("web", "b"), ("api", "a"), ("probe", "web.1"), ("db", "x"),
           ("cron", "y"), ("app7", "z")]


def reference_blocks(rows: Sequence[Row]) -> list[BlockParams]:
    """The writer's grouping before `encode_streams`: one Python step per row."""
    by_stream: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        by_stream.setdefault((row[2], row[3]), []).append(row)
    return [encode_block(stream) for stream in by_stream.values()]


@st.composite
def commits(draw: st.DrawFn) -> list[Row]:
    """A commit's rows: increasing ids, one to seven streams (more than FEW_STREAMS
    sometimes), request fields or None, markers, floats and ints of every kind."""
    count = draw(st.integers(min_value=1, max_value=60))
    streams = draw(st.lists(st.sampled_from(STREAMS), min_size=1, max_size=len(STREAMS),
                            unique=True))
    ids = sorted(draw(st.sets(st.integers(min_value=1, max_value=2**53), min_size=count,
                              max_size=count)))
    rows: list[Row] = []
    for record_id in ids:
        app, source = draw(st.sampled_from(streams))
        emitted = draw(st.none() | st.floats(allow_nan=False))
        line = draw(st.text(max_size=30))
        if draw(st.booleans()):
            record = Record(record_id, emitted, app, source, "127.0.0.1", "crypto", line,
                            "log", "GET", draw(st.text(max_size=8)),
                            draw(st.integers(100, 599)),
                            draw(st.floats(min_value=0, max_value=1e6)),
                            draw(st.integers(0, 2**40)), draw(st.integers(1, 2**22)),
                            draw(st.none() | st.integers(1, 64)))
        else:
            record = Record(record_id, emitted, app, source, "::1", "plain", line,
                            draw(st.sampled_from(["log", "marker"])))
        rows.append(record.row())
    return rows


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=commits())
def test_encode_streams_gives_the_blocks_of_the_per_row_grouping(rows: list[Row]) -> None:
    """Byte for byte the blocks the writer stored before (same streams in the same order,
    same compressed columns), with the columns given or not, and they read back as the
    rows."""
    expected = reference_blocks(rows)
    assert encode_streams(rows) == expected
    assert encode_streams(rows, list(zip(*rows, strict=True))) == expected
    back: list[Row] = []
    for _, _, count, app, source, lines_blob, columns_blob in expected:
        lines, columns = decode_lines(lines_blob), decode_columns(columns_blob)
        back.extend(record_at(app, source, lines, columns, i).row() for i in range(count))
    assert sorted(back) == sorted(rows)


def test_many_streams_take_the_per_row_path_with_the_same_result() -> None:
    """Past FEW_STREAMS streams in one commit, blocks are still one per stream, in the
    order of each stream's first row."""
    rows = [Record(i, None, *STREAMS[i % len(STREAMS)], "h", "plain", f"l{i}").row()
            for i in range(1, 50)]
    assert len(STREAMS) > FEW_STREAMS
    blocks = encode_streams(rows)
    assert [(b[3], b[4]) for b in blocks] == STREAMS[1:] + STREAMS[:1]
    assert blocks == reference_blocks(rows)


LISTENER = ListenerConfig("plain", "127.0.0.1", 0, "socket", "web", "s")


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[str, Lines]]:
    """A wake-up's decoded datagrams: lines or none, escapes, lost counts, markers, the
    stream named by the datagram or the listener's default."""
    return [(draw(st.sampled_from(["127.0.0.1", "10.0.0.2"])),
             Lines(draw(st.lists(st.sampled_from(["a", "b c", "[pid: 1|app: 0"]), max_size=3)),
                   app=draw(st.none() | st.sampled_from(["shop", "api"])),
                   source=draw(st.none() | st.sampled_from(["w1", "w2"])),
                   escaped=draw(st.integers(0, 2)), lost=draw(st.integers(0, 5)),
                   markers=tuple(draw(st.lists(st.just("-- lost --"), max_size=1)))))
            for _ in range(draw(st.integers(min_value=1, max_value=20)))]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=batches())
def test_a_stored_batch_is_counted_as_each_datagram_was(tmp_path: Path,
                                                         batch: list[tuple[str, Lines]]
                                                         ) -> None:
    """Single-node mode, every datagram stored: accepted datagrams, lines, escapes and
    lost lines by stream are what counting each datagram in turn gives."""
    stats = ListenerStats()
    ingest = Ingest(Ids(), SqliteStore(tmp_path))
    handoff = Handoff(LISTENER, Origin("plain", "socket", "web", "s"), ingest, stats)
    handoff.batch(batch)
    lost: Counter[tuple[str, str]] = Counter()
    for _, result in batch:
        if result.lost:
            lost[(result.app or "web", result.source or "s")] += result.lost
    assert stats.datagrams_accepted == len(batch)
    assert stats.lines == sum(len(result.lines) for _, result in batch)
    assert stats.escaped == sum(result.escaped for _, result in batch)
    assert stats.lost == lost
    assert not stats.dropped


def test_the_writer_counts_its_queued_rows_as_frames_come_and_go(tmp_path: Path) -> None:
    """The writer's count of queued rows (its bound on reading ahead, and what it logs)
    is the sum over its queued ROWS frames after reads and partial commits."""
    read_fd, write_fd = os.pipe()
    ack_read, ack_write = os.pipe()
    try:
        writer = PartitionWriter(tmp_path, span_us=3_600_000_000, retention_us=0,
                                 max_bytes=0)
        loop = WriterLoop(writer, read_fd, ack_write, batch_max=5, commit_interval=0.0)
        sizes = [3, 1, 4, 2]
        next_id = 1
        for size in sizes:
            rows = [Record(next_id + i, None, "web", "s", "h", "plain", "x").row()
                    for i in range(size)]
            next_id += size
            os.write(write_fd, frames.encode(frames.ROWS, rows))
        os.write(write_fd, frames.encode(frames.FLUSH, 7))
        loop._read(1.0)
        assert loop._queued_rows() == sum(sizes)
        assert loop._step() is False  # the first two frames: 4 rows, within batch_max
        assert loop._queued_rows() == sum(sizes[2:])
        assert loop._step() is False
        assert loop._step() is False
        assert loop._queued_rows() == 0
        writer.reset()
        assert [kind for kind, _ in frames.FrameReader().feed(os.read(ack_read, 1 << 16))
                ] == [frames.COMMITTED] * 3 + [frames.FLUSHED]
    finally:
        for fd in (read_fd, write_fd, ack_read, ack_write):
            os.close(fd)
