"""Native vs crypto: the highest rate a real collector stores with zero loss, for the
native format at its default batching and for logcrypto (aes-256-cbc, one line per
datagram), in one run, with the bytes each puts on the wire per line.

Each (format, rate) runs against a fresh collector (storage on) fed by `shipper loadgen`
from a separate process, which pre-encrypts everything before it starts sending. A rate
is zero-loss when every line sent was committed to the store (and, for native, the
collector counted no line lost). Rates go up until two in a row miss.

    .venv/bin/python bench/native.py                      # two to three minutes
    .venv/bin/python bench/native.py --duration 3 --crypto-rates 50000 75000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, Collector, Sampler, env_note
from logwire.native import generate_key

TARGET_RATIO = 3.0
SECRET = "benchmark-secret-aes-256-cbc-key"
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
    def zero_loss(self) -> bool:
        """Every line sent was stored, and none reported lost."""
        return self.stored >= self.lines and self.lost == 0

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
    collector = Collector(listener=listener)
    collector.start()
    try:
        credentials = ["--key", KEY] if fmt == "native" else ["--secret", SECRET]
        sampler = Sampler(collector.processes)
        sampler.start()
        done = subprocess.run(
            [sys.executable, "-m", "shipper", "loadgen", "--format", fmt, "--target",
             f"127.0.0.1:{collector.udp_port}", "--rate", str(rate), "--duration",
             str(duration), "--prefix", "bench/web.1", *credentials],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
        found = _SENT.search(done.stdout)
        if found is None:
            raise RuntimeError(f"loadgen said: {done.stdout} {done.stderr}")
        datagrams, lines, wire = (int(found.group(i)) for i in (1, 2, 3))
        metrics = collector.settle(datagrams)
        sampler.stop()
        stored = int(metrics.get("collector_store_lines_committed_total", 0))
        lost = int(sum(v for k, v in metrics.items()
                       if k.startswith("collector_lines_lost_total")))
        return Run(fmt, rate, lines, datagrams, wire, float(found.group(4)), stored, lost,
                   sampler.cpu_percent)
    finally:
        collector.stop()


def climb(fmt: str, rates: list[float], duration: float) -> list[Run]:
    """Rates in order until two in a row miss."""
    runs: list[Run] = []
    misses = 0
    for rate in rates:
        result = run(fmt, rate, duration)
        runs.append(result)
        print(f"{fmt:>7} {rate:9.0f} {result.lines:9d} {result.datagrams:9d} "
              f"{100 * result.stored / max(1, result.lines):8.2f} {result.lost:7d} "
              f"{result.bytes_per_line:8.1f} {result.bytes_per_line_ip:8.1f} "
              f"{result.cpu:6.0f}", flush=True)
        misses = 0 if result.zero_loss else misses + 1
        if misses >= 2:
            break
    return runs


def main() -> int:
    """Both formats, then the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per rate")
    parser.add_argument("--crypto-rates", type=float, nargs="+",
                        default=[20_000, 25_000, 30_000, 35_000, 40_000, 50_000, 60_000,
                                 75_000, 90_000, 110_000])
    parser.add_argument("--native-rates", type=float, nargs="+",
                        default=[60_000, 75_000, 90_000, 105_000, 120_000, 150_000,
                                 180_000, 225_000, 270_000, 330_000])
    args = parser.parse_args()
    print(f"# native vs crypto: {env_note()}; {args.duration:g} s per rate")
    print(f"{'format':>7} {'rate/s':>9} {'lines':>9} {'dgrams':>9} {'stored%':>8} "
          f"{'lost':>7} {'B/line':>8} {'+IP/UDP':>8} {'cpu%':>6}")
    crypto = climb("crypto", args.crypto_rates, args.duration)
    native = climb("native", args.native_rates, args.duration)
    best_crypto = max((r.rate for r in crypto if r.zero_loss), default=0.0)
    best_native = max((r.rate for r in native if r.zero_loss), default=0.0)
    ratio = best_native / best_crypto if best_crypto else float("nan")
    print(f"\ncrypto (aes-256-cbc, 1 line/datagram) max zero-loss rate: {best_crypto:.0f} "
          f"lines/s, {crypto[0].bytes_per_line:.0f} B/line on the wire "
          f"({crypto[0].bytes_per_line_ip:.0f} with IP/UDP headers)")
    print(f"native (default batching, 1472 B budget) max zero-loss rate: {best_native:.0f} "
          f"lines/s, {native[0].bytes_per_line:.0f} B/line on the wire "
          f"({native[0].bytes_per_line_ip:.0f} with IP/UDP headers)")
    print(f"ratio native/crypto: {ratio:.2f} (target {TARGET_RATIO:g}); load average at "
          f"the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
