"""What silences cost the dispatcher: `SilenceRegistry.match` per notification, in-process.

The dispatcher asks the registry at every delivery attempt whether an active silence holds
the notification back. This times that call (timeit, best of `--repeat`) with the
benchmark's silences (bench/silence_mix.py: all for app `bench`, the worst case) for three
notifications: a probe no silence holds, a Traceback alarm no silence holds, and a HARAKIRI
alarm the last silences hold; the baseline is the same call with no silence (same run).
Then what building the index costs (alarms/silences.py SilenceIndex: once per change of
the silences, paid by the next notification).

    .venv/bin/python bench/silences.py                   # 1,000 silences; a few seconds
    .venv/bin/python bench/silences.py --silences 10000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import timeit
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alarms.notification import Notification, new_id
from alarms.silence_store import SilenceRegistry
from alarms.silences import Silence, SilenceIndex, _chunk, parse_body
from bench.harness import env_note
from bench.silence_mix import silence_bodies

NOW = 1_800_000_000.0
CASES = (
    ("probe, not held", "probe", "web.2", "alarm-probe seq=41 sent=1800000000.123456"),
    ("Traceback, not held", "hook", "web.1", "Traceback (most recent call last): seq=2501"),
    ("HARAKIRI, held", "hook", "web.1",
     "Wed Nov 25 09:31:31 2026 - *** HARAKIRI ON WORKER 3 (pid: 4242, try: 1) *** "
     "seq=22501"),
)


class Kept:
    """A SilenceFile holding the silences in memory (no disk: matching reads memory)."""

    def __init__(self, silences: Sequence[Silence]) -> None:
        self._silences = list(silences)

    async def load(self) -> list[Silence]:
        """The silences given."""
        return list(self._silences)

    async def save(self, silences: Sequence[Silence]) -> None:
        """Keep them."""
        self._silences = list(silences)


def registry(count: int) -> SilenceRegistry:
    """An opened registry with `count` of the benchmark's silences, active at NOW."""
    made = [parse_body(body, NOW) for body in silence_bodies(count)]
    silences = [s for s in made if isinstance(s, Silence)]
    assert len(silences) == count, made
    opened = SilenceRegistry(Kept(silences))
    asyncio.run(opened.open())
    return opened


def per_call_us(reg: SilenceRegistry, notification: Notification, repeat: int) -> float:
    """Microseconds per `reg.match(notification, NOW)`, best of `repeat`."""
    timer = timeit.Timer(lambda: reg.match(notification, NOW))
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e6


def main() -> int:
    """Time each case with no silences and with `--silences`; print both and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--silences", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"# silence matching: {env_note()}; SilenceRegistry.match per notification, "
          f"best of {args.repeat}; {args.silences} silences for app bench against none")
    bare, loaded = registry(0), registry(args.silences)
    print(f"{'notification':>22} {'none us':>9} {f'{args.silences} us':>10} {'ratio':>7}"
          f" {'held by':>10}")
    for label, alarm, source, message in CASES:
        note = Notification(id=new_id(), alarm=alarm, plugin="webhook", app="bench",
                            source=source, condition="log", message=message,
                            created_at=NOW)
        held = loaded.match(note, NOW)
        base, with_silences = (per_call_us(bare, note, args.repeat),
                               per_call_us(loaded, note, args.repeat))
        print(f"{label:>22} {base:9.2f} {with_silences:10.2f} {with_silences / base:7.1f}"
              f" {'-' if held is None else held.comment[-12:]:>10}", flush=True)
    print(f"index build, {args.silences} silences: {build_ms(loaded, fresh=True):.1f} ms "
          f"the first time, {build_ms(loaded, fresh=False):.1f} ms after one more silence "
          "(once per change, at the next notification)")
    return 0


def build_ms(reg: SilenceRegistry, fresh: bool) -> float:
    """Milliseconds to index the registry's silences: with nothing compiled yet, or with
    one silence added to those already indexed (its chunks mostly compiled)."""
    silences = tuple(reg.listed(NOW, everything=True))[::-1]
    if fresh:
        _chunk.cache_clear()
    else:
        SilenceIndex(silences)
        added = parse_body({"app": "bench", "for": "1h", "comment": "one more",
                            "match": "one more pattern"}, NOW)
        assert isinstance(added, Silence)
        silences += (added,)
    started = time.perf_counter()
    SilenceIndex(silences)
    return (time.perf_counter() - started) * 1000


if __name__ == "__main__":
    sys.exit(main())
