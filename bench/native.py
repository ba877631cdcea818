"""Native vs crypto: the highest rate a real collector stores with zero loss, for the
native format at its default batching and for logcrypto (aes-256-cbc, one line per
datagram, the baseline), in one run, with the bytes each puts on the wire per line.

Each figure is searched for (bench/search.py): from 2,000 lines/s, doubling while held,
then bisecting to 5 %, the two formats taking turns so that the machine's load drifts alike
for both; so the benchmark finds its figures on a slow machine as on a fast one. Each trial
runs against a fresh collector (storage on) fed by `shipper loadgen` from a separate
process, which pre-encrypts everything before it starts sending. A trial holds when every
line sent was committed to the store (within `--tolerance`; for native, the collector also
counted no line lost) and loadgen kept the rate.

    .venv/bin/python bench/native.py                      # about three minutes
    .venv/bin/python bench/native.py --duration 5 --budget 600
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ROOT,
    SECRET,
    Budget,
    Sampler,
    Verdict,
    add_search_options,
    bench_collector,
    env_note,
    metric_sum,
    processes,
    ratio_line,
    retrying,
    search_note,
    search_spec,
    sender_note,
    settle,
    trial_duration,
    udp_port,
)
from bench.search import RateSearch, interleave
from logwire.native import generate_key

TARGET_RATIO = 3.0
KEY = generate_key().token
_SENT = re.compile(r"sent (\d+) datagrams \((\d+) lines, (\d+) bytes\) in ([\d.]+)s")


@dataclass
class Run:
    """One format at one rate."""

    fmt: str
    rate: float
    lines: int
    datagrams: int
    wire_bytes: int
    seconds: float
    stored: int
    lost: int
    cpu: float

    @property
    def bytes_per_line(self) -> float:
        """UDP payload bytes per line."""
        return self.wire_bytes / max(1, self.lines)

    @property
    def bytes_per_line_ip(self) -> float:
        """Bytes per line counting the 28 bytes of IPv4 and UDP header per datagram."""
        return (self.wire_bytes + 28 * self.datagrams) / max(1, self.lines)


def run(fmt: str, rate: float, duration: float) -> Run:
    """One rate against a fresh collector."""
    listener = (f"format = native\nkey = {KEY}" if fmt == "native"
                else f"format = crypto\nsecret = {SECRET}")
    with bench_collector(listener) as collector:
        collector.start(timeout=30)
        credentials = ["--key", KEY] if fmt == "native" else ["--secret", SECRET]
        sampler = Sampler(lambda: processes(collector))
        sampler.start()
        done = subprocess.run(
            [sys.executable, "-m", "shipper", "loadgen", "--format", fmt, "--target",
             f"127.0.0.1:{udp_port(collector)}", "--rate", str(rate), "--duration",
             str(duration), "--prefix", "bench/web.1", *credentials],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
        found = _SENT.search(done.stdout)
        if found is None:
            raise RuntimeError(f"loadgen said: {done.stdout} {done.stderr}")
        datagrams, lines, wire = (int(found.group(i)) for i in (1, 2, 3))
        metrics = settle(collector, datagrams)
        sampler.stop()
    stored = int(metrics.get("collector_store_lines_committed_total", 0))
    lost = metric_sum(metrics, "collector_lines_lost_total")
    return Run(fmt, rate, lines, datagrams, wire, float(found.group(4)), stored, lost,
               sampler.cpu_percent)


def trial(fmt: str, rate: float, args: argparse.Namespace, largest: dict[str, Run],
          short: set[tuple[str, float]]) -> bool:
    """One format at one rate, printed; whether it held. The largest run of each format
    is kept in `largest` for its bytes per line; a rate loadgen could not keep is added
    to `short`."""
    seconds = trial_duration(rate, args.duration, args.max_lines)
    result = run(fmt, rate, seconds)
    if fmt not in largest or result.lines > largest[fmt].lines:
        largest[fmt] = result
    verdict = Verdict(rate, result.lines, result.stored, result.seconds, args.tolerance)
    # A line the collector counted lost is a miss, whatever the store's count says.
    held = verdict.held and result.lost == 0
    mark = verdict.mark if result.lost == 0 else "lost"
    print(f"{fmt:>7} {rate:9.0f} {seconds:5.1f} {result.lines:9d} {result.datagrams:9d} "
          f"{verdict.achieved:8.0f} {100 * result.stored / max(1, result.lines):8.2f} "
          f"{result.lost:7d} {mark:>7} {result.bytes_per_line:8.1f} "
          f"{result.bytes_per_line_ip:8.1f} {result.cpu:6.0f}", flush=True)
    if verdict.sender_short:
        short.add((fmt, rate))
    return held


def main() -> int:
    """Both formats by turns, then the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_options(parser, budget=150.0, max_lines=600_000)
    args = parser.parse_args()
    spec = search_spec(args)
    print(f"# native vs crypto: {env_note()}; {search_note(args)}; native also holds "
          "only if the collector counted no line lost")
    print(f"{'format':>7} {'rate/s':>9} {'secs':>5} {'lines':>9} {'dgrams':>9} "
          f"{'lines/s':>8} {'stored%':>8} {'lost':>7} {'verdict':>7} {'B/line':>8} "
          f"{'+IP/UDP':>8} {'cpu%':>6}")
    largest: dict[str, Run] = {}
    short: set[tuple[str, float]] = set()
    crypto, native = RateSearch(spec), RateSearch(spec)
    budget = Budget(args.budget)

    def oracle(fmt: str) -> Callable[[float], bool]:
        return retrying(lambda rate: trial(fmt, rate, args, largest, short), args.retries)

    interleave([(crypto, oracle("crypto")), (native, oracle("native"))], budget.out_of_time)
    for fmt, search, what in (("crypto", crypto, "aes-256-cbc, 1 line/datagram, baseline"),
                              ("native", native, "default batching, 1472 B budget")):
        sample = largest.get(fmt)
        wire = (f"; {sample.bytes_per_line:.0f} B/line on the wire "
                f"({sample.bytes_per_line_ip:.0f} with IP/UDP headers)" if sample else "")
        print(f"\n{fmt} ({what}) max zero-loss rate: {search.describe()}{wire}"
              + sender_note(search.bad, {rate for f, rate in short if f == fmt}), end="")
    print("\n" + ratio_line("native", native.figure, "crypto", crypto.figure)
          + f" (target {TARGET_RATIO:g}); load average at the end "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {budget.elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
