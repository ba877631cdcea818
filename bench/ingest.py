"""Ingest benchmark: aes-256-cbc logcrypto datagrams at fixed rates into a real collector.

For each rate, for a bounded time, it reports the share of lines that reached the store,
lines/s stored, the collector's CPU (main process and store writer, % of one core) and peak
RSS, and p50/p99 latency from send to committed-in-the-store and from send to arrival at a
live follower. In the same run it measures a bare uvloop receiver that only counts
datagrams (the practical limit of this machine) and prints the collector's highest
zero-loss rate as a ratio to the receiver's.

    .venv/bin/python bench/ingest.py                  # default rates, 5 s each
    .venv/bin/python bench/ingest.py --rates 50000 --duration 10
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    BareReceiver,
    Collector,
    Follower,
    Sampler,
    Sender,
    StorePoller,
    env_note,
    latencies,
    percentile,
)

TARGET = 50_000


@dataclass
class Run:
    """One rate's results."""

    rate: float
    sent: int
    stored: int
    seconds: float
    cpu: float
    rss_mb: float
    store_ms: list[float]
    follow_ms: list[float]
    kernel_drops: int

    @property
    def delivered(self) -> float:
        """Stored lines as a share of sent ones."""
        return self.stored / self.sent if self.sent else 0.0


def run_collector(rate: float, duration: float) -> Run:
    """One rate against a fresh collector."""
    collector = Collector()
    collector.start()
    try:
        sender = Sender(collector.udp_port, rate, duration, collector.secret)
        poller = StorePoller(collector.data_dir)
        follower = Follower(collector.http_port)
        follower.start()
        follower.connected.wait(10)
        poller.start()
        sampler = Sampler(collector.processes)
        sampler.start()
        result = sender.go()
        metrics = collector.settle(result.sent)
        sampler.stop()
        time.sleep(0.2)
        poller.stop()
        follower.stop()
        stored = int(metrics.get("collector_store_lines_committed_total", 0))
        drops = int(sum(v for k, v in metrics.items()
                        if k.startswith("collector_udp_kernel_drops_total")))
        return Run(rate, result.sent, stored, result.seconds, sampler.cpu_percent,
                   sampler.peak_rss / 2**20, latencies(result.probes, poller.seen),
                   latencies(result.probes, follower.seen), drops)
    finally:
        collector.stop()


def run_bare(rate: float, duration: float) -> float:
    """Share of datagrams the bare receiver counted at `rate`."""
    receiver = BareReceiver()
    sender = Sender(receiver.port, rate, duration, "benchmark-secret-aes-256-cbc-key")
    result = sender.go()
    time.sleep(0.5)
    return receiver.stop() / result.sent if result.sent else 0.0


def main() -> int:
    """Run the rates, print the table and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[25_000, 50_000, 75_000, 100_000, 150_000, 200_000])
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    print(f"# ingest benchmark: {env_note()}; {args.duration:.0f} s per rate")
    print(f"{'rate/s':>8} {'sent':>8} {'stored%':>8} {'lines/s':>9} {'cpu%':>6} "
          f"{'rss MB':>7} {'store p50':>9} {'p99 ms':>7} {'follow p50':>10} {'p99 ms':>7} "
          f"{'kernel drops':>12} | {'bare recv%':>10}")
    best = best_bare = 0.0
    misses = 0
    for rate in args.rates:
        run = run_collector(rate, args.duration)
        bare = run_bare(rate, args.duration)
        print(f"{rate:8.0f} {run.sent:8d} {100 * run.delivered:8.2f} "
              f"{run.stored / run.seconds:9.0f} {run.cpu:6.0f} {run.rss_mb:7.0f} "
              f"{percentile(run.store_ms, 0.5):9.1f} {percentile(run.store_ms, 0.99):7.1f} "
              f"{percentile(run.follow_ms, 0.5):10.1f} "
              f"{percentile(run.follow_ms, 0.99):7.1f} {run.kernel_drops:12d} | "
              f"{100 * bare:10.2f}", flush=True)
        if run.stored >= run.sent:
            best = max(best, rate)
        if bare >= 1.0:
            best_bare = max(best_bare, rate)
        misses = misses + 1 if run.delivered < 0.9 else 0
        if misses >= 2:
            break
    ratio = best / best_bare if best_bare else float("nan")
    print(f"\ncollector max zero-loss rate: {best:.0f} lines/s (target {TARGET})")
    print(f"bare uvloop receiver max zero-loss rate: {best_bare:.0f} datagrams/s "
          f"(baseline, same run)")
    print(f"ratio collector/baseline: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
