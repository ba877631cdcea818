"""AlarmEngine.consume alone over realistic batches: CPU µs per line of the 50 rules.

bench/pipeline.py's lines (bench/sender.py's: uWSGI request and app lines, one in
RARE_EVERY an error some rules match) as records of app `bench`, in batches of `--batch`,
through the engine with bench/alarms.py's 50 rules: the batched `consume` against the
per-record evaluation it replaced (`--per-record`), best of `--repeat` passes.

    .venv/bin/python bench/alarmengine.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alarms.engine import AlarmEngine
from alarms.notification import Notification
from bench.alarms import RARE_EVERY
from bench.pipeline import bench_config
from bench.sender import RARE_LINES
from collector.record import Record
from shipper.loadgen import make_lines


def records(count: int) -> list[Record]:
    """`count` records of app bench, as bench/pipeline.py's lines."""
    lines = [line.decode().rstrip("\n") for line in make_lines(count)]
    for seq in range(RARE_EVERY // 2 + 1, count, RARE_EVERY):
        lines[seq] = RARE_LINES[seq // RARE_EVERY % len(RARE_LINES)].format(seq=seq)
    start = int(time.time() * 1e6)
    return [Record(start + i, None, "bench", "web.1", "127.0.0.1", "crypto", line)
            for i, line in enumerate(lines)]


def one_pass(engine: AlarmEngine, batches: list[list[Record]], per_record: bool) -> float:
    """CPU seconds for every batch through the engine."""
    apps = engine._apps
    start = time.process_time()
    if per_record:
        for batch in batches:
            for item in batch:
                app = apps.get(item.app)
                if app is not None:
                    events = app.evaluate(item)
                    if events:
                        engine._raised.clear()
                        engine._emit(app, events)
    else:
        for batch in batches:
            engine.consume(batch)
    return time.process_time() - start


def main() -> None:
    """Print CPU µs per line of each way, by turns."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = records(args.lines)
    batches = [data[i:i + args.batch] for i in range(0, len(data), args.batch)]
    with tempfile.TemporaryDirectory() as directory:
        config = bench_config(Path(directory))
    best = {"per-record": float("inf"), "batched": float("inf")}
    fired: list[Notification] = []
    for _ in range(args.repeat):
        for name in ("per-record", "batched"):
            engine = AlarmEngine(config.apps, fired.append)
            best[name] = min(best[name], one_pass(engine, batches, name == "per-record"))
    for name, seconds in best.items():
        print(f"{name}: {1e6 * seconds / len(data):.3f} CPU µs per line (best of "
              f"{args.repeat} x {len(data)} lines, batches of {args.batch})")


if __name__ == "__main__":
    main()
