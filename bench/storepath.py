"""The store path alone, in one process: the main process's frame encoding and the
writer's frame reading and commit, as CPU µs per line.

Records as the collector makes them from bench/sender.py's lines (one in `--probe-every`
of a second stream, `probe/web.1`, as bench/peers.py sends), in frames of `--frame`
records (one loop iteration's), committed in groups of `--commit` rows (the writer's group
commit: about 640 at 128,000 lines/s with its 5 ms interval) into a fresh directory.
Prints, best of `--repeat` passes: `ship` (the collector's `SqliteStore._ship`: rows and
the marshalled frame), `read` (the writer's `FrameReader.feed`), `commit`
(`PartitionWriter.commit`: grouping, block encoding, zstd, SQLite).

    .venv/bin/python bench/storepath.py
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.blocks import SPAN, make_rows
from collector.record import Record, Row
from collector.server import gcpolicy
from collector.store import frames
from collector.store.sqlite import SqliteStore
from collector.store.writer import PartitionWriter


def make_records(count: int, probe_every: int) -> list[Record]:
    """bench/blocks.py's rows as records, one in `probe_every` of app `probe`."""
    records = [Record.from_row(row) for row in make_rows(count)]
    if probe_every:
        for index in range(probe_every // 2, count, probe_every):
            records[index].app = "probe"
    return records


def one_pass(records: list[Record], frame: int, commit: int) -> dict[str, float]:
    """CPU seconds of each stage over `records`."""
    store = SqliteStore(Path("/nonexistent"))
    started = time.process_time()
    encoded: list[bytes] = []
    for first in range(0, len(records), frame):
        store._buffer = records[first:first + frame]
        store._ship()
        encoded.append(store._unacked.popleft()[1])
    ship = time.process_time() - started
    # The writer's pattern: frames read as they come, rows held until a group commit,
    # then freed (what the garbage collector sees).
    reader = frames.FrameReader()
    read = done = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-storepath-") as tmp:
        writer = PartitionWriter(Path(tmp), span_us=SPAN, retention_us=0, max_bytes=0)
        queued: list[Row] = []
        for position, data in enumerate(encoded):
            started = time.process_time()
            for _, payload in reader.feed(data):
                queued.extend(payload)
            read += time.process_time() - started
            if len(queued) >= commit or position == len(encoded) - 1:
                started = time.process_time()
                writer.commit(queued)
                queued = []
                done += time.process_time() - started
        writer.reset()
    return {"ship": ship, "read": read, "commit": done}


def main() -> int:
    """Parse options, run, print the best of each stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--frame", type=int, default=64, help="records per frame")
    parser.add_argument("--commit", type=int, default=640, help="rows per commit")
    parser.add_argument("--probe-every", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--gc", choices=("default", "policy", "off"), default="policy",
                        help="the writer's garbage collector: CPython's thresholds, "
                             "collector.server.gcpolicy's, or off")
    args = parser.parse_args()
    if args.gc == "policy":
        gcpolicy.apply()
    elif args.gc == "off":
        gc.disable()
    records = make_records(args.lines, args.probe_every)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for stage, seconds in one_pass(records, args.frame, args.commit).items():
            best[stage] = min(best.get(stage, float("inf")), seconds)
    per_line = {stage: 1e6 * seconds / len(records) for stage, seconds in best.items()}
    print("  ".join(f"{stage} {value:.3f}" for stage, value in per_line.items())
          + f"  µs per line (best of {args.repeat} x {len(records)} lines, frames of "
            f"{args.frame}, commits of {args.commit}, gc {args.gc}, load average "
            f"{os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
