"""The store's writer and reader in one process: blocks against the previous rows layout.

Fills a fresh data directory with `--lines` records made from shipper.loadgen.make_lines
(the lines bench/sender.py sends: uWSGI request lines parsed as the collector does, and
app lines), committed in groups of `--batch` rows as the writer's group commit does at
about 64,000 lines/s, once as compressed blocks (`PartitionWriter.commit`, today's
layout) and once as one row and one index entry per line (the `logs` table of the
previous version, committed as its writer did), by turns. For each: the writer's CPU µs
per line in `commit` (process CPU time), disk bytes per line (the files with their WAL
and -shm), and the time of three queries through `SqliteStore.query`: a regex over every
line of app `bench` (as bench/peers.py's query), the newest 100 lines, and 10 lines past
a cursor near the end (a tail resuming).

    .venv/bin/python bench/blocks.py                 # a million lines, ~2 min
    .venv/bin/python bench/blocks.py --lines 200000 --rounds 2
    .venv/bin/python bench/blocks.py --lines 50000 --batch 1 --maintain-every 6000   # a slow stream
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.query import LogQuery
from collector.record import Record, Row
from collector.requestlog import parse_request_line
from collector.store.partitions import list_partitions, partition_path, partition_start
from collector.store.schema import INSERT, LEGACY_SCHEMA, connect
from collector.store.sqlite import SqliteStore
from collector.store.writer import PartitionWriter
from shipper.loadgen import make_lines

SPAN = 3_600_000_000
REGEX = r"payment 9999\d accepted"


def make_rows(count: int) -> list[Row]:
    """Rows as the collector makes them from the sender's lines, 64,000 per second."""
    start = int(time.time() * 1e6)
    rows: list[Row] = []
    for index, raw in enumerate(make_lines(count)):
        text = raw.decode().rstrip("\n")
        fields = parse_request_line(text) if "[pid: " in text else None
        record_id = start + index * 15
        emitted = record_id / 1e6 - 0.001
        if fields is None:
            record = Record(record_id, emitted, "bench", "web.1", "127.0.0.1", "crypto", text)
        else:
            record = Record(record_id, emitted, "bench", "web.1", "127.0.0.1", "crypto", text,
                            "log", fields.method, fields.path, fields.status, fields.msecs,
                            fields.size, fields.pid, None)
        rows.append(record.row())
    return rows


class LegacyWriter:
    """The previous version's commit: one row per line into a `logs` table with its index."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._connections: dict[int, sqlite3.Connection] = {}

    def commit(self, rows: list[Row]) -> None:
        """One transaction per partition, `INSERT OR IGNORE` of every row."""
        groups: dict[int, list[Row]] = {}
        for row in rows:
            groups.setdefault(partition_start(row[0], SPAN), []).append(row)
        for start, group in groups.items():
            conn = self._connections.get(start)
            if conn is None:
                conn = connect(partition_path(self._dir, start))
                conn.executescript(LEGACY_SCHEMA)
                self._connections[start] = conn
            conn.execute("BEGIN")
            conn.executemany(INSERT, group)
            conn.execute("COMMIT")

    def reset(self) -> None:
        """Close the connections."""
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


def disk_bytes(logs: Path) -> int:
    """The partition files' size with their WAL and -shm."""
    return sum(f.stat().st_size for p in list_partitions(logs) for f in p.files() if f.exists())


def one_round(layout: str, rows: list[Row], batch: int, maintain_every: int
              ) -> dict[str, float]:
    """Fill a fresh directory with `layout`, then time the queries."""
    with tempfile.TemporaryDirectory(prefix="bench-blocks-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        writer: PartitionWriter | LegacyWriter
        writer = (PartitionWriter(logs, span_us=SPAN, retention_us=0, max_bytes=0)
                  if layout == "blocks" else LegacyWriter(logs))
        cpu = time.process_time()
        since_maintenance = 0
        for offset in range(0, len(rows), batch):
            writer.commit(rows[offset:offset + batch])
            since_maintenance += batch
            if maintain_every and since_maintenance >= maintain_every and layout == "blocks":
                writer.maintain(0)  # type: ignore[union-attr]
                since_maintenance = 0
        cpu = time.process_time() - cpu
        size = disk_bytes(logs)
        writer.reset()
        store = SqliteStore(Path(tmp))
        cursor = rows[-50][0]
        timings: dict[str, list[float]] = {"regex": [], "newest": [], "after": []}
        found = 0
        for _ in range(3):
            for name, query in (("regex", LogQuery(app="bench", regex=REGEX, limit=100)),
                                ("newest", LogQuery(app="bench", limit=100)),
                                ("after", LogQuery(app="bench", after=cursor, limit=10))):
                began = time.perf_counter()
                answer = asyncio.run(store.query(query))
                timings[name].append(time.perf_counter() - began)
                if name == "regex":
                    found = len(answer)
        return {"cpu_us": cpu / len(rows) * 1e6, "bytes": size / len(rows), "found": found,
                **{f"{k}_ms": statistics.median(v) * 1e3 for k, v in timings.items()}}


def main() -> int:
    """Parse options, run the rounds by turns, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--maintain-every", type=int, default=0, metavar="ROWS",
                        help="run the writer's maintenance (compaction) every ROWS rows "
                             "(the writer's is every 30 s: 6,000 rows at 200 lines/s)")
    args = parser.parse_args()
    rows = make_rows(args.lines)
    print(f"{args.lines} lines, {args.batch} rows per commit", flush=True)
    print(f"{'layout':8} {'commit µs/line':>15} {'B/line':>8} {'regex ms':>9} "
          f"{'newest ms':>10} {'after ms':>9} {'matched':>8}", flush=True)
    for _ in range(args.rounds):
        for layout in ("rows", "blocks"):
            got = one_round(layout, rows, args.batch, args.maintain_every)
            print(f"{layout:8} {got['cpu_us']:15.2f} {got['bytes']:8.1f} "
                  f"{got['regex_ms']:9.0f} {got['newest_ms']:10.1f} {got['after_ms']:9.1f} "
                  f"{got['found']:8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
