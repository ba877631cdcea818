"""Compressed blocks of lines: how rows are packed into, and read back from, a partition.

A block holds the rows of one stream (app, source) committed in one transaction: its id
range, its count and the stream in plain columns (so the index skips whole blocks), and
the rows' other columns in two zstd-compressed blobs, `lines` (the text a regex reads)
and `columns` (every other column, ids first), each a `marshal`led list or tuple of lists.
marshal keeps every value's type exactly (None stays None, a float stays a float); its
format is stable across Python versions (version 4 here, readable by every later one).

Partitions written before blocks hold a `logs` table of rows; readers read both tables
(see `read_rows`, `collector.store.sqlite`), so an upgraded collector keeps its history.
"""

from __future__ import annotations

import marshal
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import Any, cast

import zstandard

from collector.record import Record, Row
from collector.store.schema import SELECT

# zstd level 1: against zlib (the stdlib) at its fastest level it compresses the lines
# 2.6 times faster and 22 % smaller, and decompresses them twice as fast; higher levels
# buy almost nothing on these lines (notes/blocks.md).
LEVEL = 1
MARSHAL_VERSION = 4

# zstandard's contexts are not safe to share between threads (queries run in several).
_local = threading.local()


def _compress(data: bytes) -> bytes:
    compressor = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = _local.compressor = zstandard.ZstdCompressor(level=LEVEL)
    return cast("bytes", compressor.compress(data))


def _decompress(data: bytes) -> bytes:
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return cast("bytes", decompressor.decompress(data))

BlockParams = tuple[int, int, int, str, str, bytes, bytes]
# Rows turned into columns, `list(zip(*rows))`: a tuple per column, in `COLUMNS` order.
Columns = Sequence[tuple[Any, ...]]


def encode_block(rows: Sequence[Row]) -> BlockParams:
    """The parameters of INSERT_BLOCK for the rows of one stream (at least one row)."""
    return encode_columns(list(zip(*rows, strict=True)))


def encode_columns(columns: Columns) -> BlockParams:
    """`encode_block` for rows already turned into columns (`zip(*rows)`), one stream."""
    ids = columns[0]
    lines = _compress(marshal.dumps(columns[7], MARSHAL_VERSION))
    # ids, emitted_at, host, format, kind, method, path, status, msecs, size, pid, worker
    rest = (columns[0], columns[1], *columns[4:7], *columns[8:])
    packed = _compress(marshal.dumps(rest, MARSHAL_VERSION))
    return (min(ids), max(ids), len(ids), columns[2][0], columns[3][0], lines, packed)


# Up to this many streams in one commit, each stream's rows are picked out by a C-level
# pass over the rows per stream; past it, by one Python step per row.
FEW_STREAMS = 4


def encode_streams(rows: Sequence[Row], columns: Columns | None = None) -> list[BlockParams]:
    """One block per stream (app, source) of `rows` (at least one row), streams in the
    order of their first row, each stream's rows in their order; `columns` is
    `zip(*rows)` when the caller has it already."""
    if columns is None:
        columns = list(zip(*rows, strict=True))
    apps, sources = columns[2], columns[3]
    count = len(apps)
    # The common case, one stream, without a Python step per row.
    if apps.count(apps[0]) == count and sources.count(sources[0]) == count:
        return [encode_columns(columns)]
    keys = list(zip(apps, sources, strict=True))
    streams = dict.fromkeys(keys)
    if len(streams) <= FEW_STREAMS:
        return [encode_block(list(compress(rows, map(key.__eq__, keys)))) for key in streams]
    by_stream: dict[tuple[str, str], list[Row]] = {}
    for key, row in zip(keys, rows, strict=True):
        stream = by_stream.get(key)
        if stream is None:
            by_stream[key] = [row]
        else:
            stream.append(row)
    return [encode_block(stream) for stream in by_stream.values()]


def decode_lines(blob: bytes) -> Sequence[str]:
    """A block's lines, in row order."""
    # Written by our own writer into our own partition files.
    return cast("Sequence[str]", marshal.loads(_decompress(blob)))  # noqa: S302


def decode_columns(blob: bytes) -> Sequence[Sequence[Any]]:
    """A block's other columns (ids first), in row order."""
    return cast("Sequence[Sequence[Any]]", marshal.loads(_decompress(blob)))  # noqa: S302


def block_ids(blob: bytes) -> Sequence[int]:
    """A block's ids, in row order."""
    return cast("Sequence[int]", decode_columns(blob)[0])


def record_at(app: str, source: str, lines: Sequence[str], columns: Sequence[Sequence[Any]],
              index: int) -> Record:
    """The record at `index` of a decoded block."""
    c = columns
    i = index
    return Record(c[0][i], c[1][i], app, source, c[2][i], c[3][i], lines[i], c[4][i],
                  c[5][i], c[6][i], c[7][i], c[8][i], c[9][i], c[10][i], c[11][i])


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """True if the partition has the table `name`."""
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                       (name,)).fetchone()
    return row is not None


def last_id(conn: sqlite3.Connection) -> int:
    """The highest id stored in a partition (blocks and legacy rows), 0 if none."""
    best = 0
    if has_table(conn, "blocks"):
        row = conn.execute("SELECT max(last_id) FROM blocks").fetchone()
        best = max(best, row[0] or 0)
    if has_table(conn, "logs"):
        row = conn.execute("SELECT max(id) FROM logs").fetchone()
        best = max(best, row[0] or 0)
    return int(best)


def stored_ids(conn: sqlite3.Connection, low: int) -> set[int]:
    """Ids at or above `low` already in a partition (the writer's check for resent rows;
    it reads only the blocks whose range reaches `low`)."""
    found: set[int] = set()
    for (blob,) in conn.execute("SELECT columns FROM blocks WHERE last_id >= ?", (low,)):
        found.update(i for i in block_ids(blob) if i >= low)
    if has_table(conn, "logs"):
        found.update(r[0] for r in conn.execute("SELECT id FROM logs WHERE id >= ?", (low,)))
    return found


def prefilter(pattern: str, compile_regex: Callable[[str], Any]) -> Any | None:
    """A regex to run once over a block's lines joined by newlines, which matches the
    joined text whenever the pattern matches any one line (it may also match where no
    line does: the lines are then checked one by one). None when no such rewrite is
    known to be safe.

    With (?m), ^ and $ match at each newline, as they do at a line's ends alone; \\b and
    \\B see a newline as a non-word character, as they see a line's ends. \\A and \\z (and
    inline flags that could turn (?m) off) only hold at the joined text's ends, so such
    patterns get no prefilter.
    """
    if "\\A" in pattern or "\\z" in pattern or "(?" in pattern:
        return None
    try:
        return compile_regex("(?m)" + pattern)
    except Exception:  # no prefilter: the exact path still runs
        return None


def scan_block(app: str, source: str, lines_blob: bytes, columns_blob: bytes, *,
               status: int | None, low: int | None, high: int | None,
               status_class: int | None = None,
               search: Callable[[str], Any] | None, joined_search: Callable[[str], Any] | None
               ) -> list[Record]:
    """The block's records that match (filters other than app/source), in row order."""
    lines = decode_lines(lines_blob)
    if joined_search is not None and joined_search("\n".join(lines)) is None:
        return []
    candidates: Iterable[int] = range(len(lines))
    if search is not None:
        candidates = [i for i, line in enumerate(lines) if search(line) is not None]
        if not candidates:
            return []
    columns = decode_columns(columns_blob)
    ids = columns[0]
    statuses = columns[7]
    found: list[Record] = []
    for i in candidates:
        record_id = ids[i]
        if ((low is not None and record_id < low) or (high is not None and record_id >= high)
                or (status is not None and statuses[i] != status)
                or (status_class is not None
                    and (statuses[i] is None or statuses[i] // 100 != status_class))):
            continue
        found.append(record_at(app, source, lines, columns, i))
    return found


def read_rows(conn: sqlite3.Connection, *, app: str | None = None, after: int = 0
              ) -> list[Row]:
    """The rows of a partition (blocks and legacy rows) of `app` (None: every app) with an
    id above `after`, in id order: for tests, tools and benchmarks that read the files
    directly. Duplicates, if a bug stored any, are kept."""
    rows: list[Row] = []
    if has_table(conn, "blocks"):
        sql = "SELECT app, source, lines, columns FROM blocks WHERE last_id > ?"
        params: tuple[object, ...] = (after,)
        if app is not None:
            sql += " AND app = ?"
            params = (after, app)
        for block_app, source, lines_blob, columns_blob in conn.execute(sql, params):
            lines = decode_lines(lines_blob)
            columns = decode_columns(columns_blob)
            rows.extend(record_at(block_app, source, lines, columns, i).row()
                        for i in range(len(lines)) if columns[0][i] > after)
    if has_table(conn, "logs"):
        sql = f"{SELECT} WHERE id > ?"
        params = (after,)
        if app is not None:
            sql += " AND app = ?"
            params = (after, app)
        rows.extend(cast("Any", conn.execute(sql, params).fetchall()))
    rows.sort(key=lambda row: row[0])
    return rows
