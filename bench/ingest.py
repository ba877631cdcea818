"""Ingest benchmark: the highest rate of aes-256-cbc logcrypto lines a real collector stores
with zero loss, beside the same figure for a bare uvloop receiver (the baseline).

Both figures are searched for (bench/search.py): from 2,000 lines/s, doubling while held,
then bisecting to 5 %, the two searches taking turns so that the machine's load drifts
alike for both; so the benchmark finds its figure on a slow machine as on a fast one. A
trial is one rate for a few seconds against a fresh collector (storage on, a live follower
connected), fed pre-encrypted datagrams by a separate process (bench/sender.py); it holds
when every line sent was committed to the store (`collector_store_lines_committed_total`,
within `--tolerance`) and the sender kept the rate. Each collector trial also reports the
collector's CPU (main process and store writer, % of one core), peak RSS, and p50/p99
latency from send to committed-in-the-store and from send to arrival at the follower. The
baseline counts datagrams and nothing else: the practical limit of this machine, sender
included.

    .venv/bin/python bench/ingest.py                     # about four minutes
    .venv/bin/python bench/ingest.py --duration 5 --budget 600
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    BareReceiver,
    Budget,
    Follower,
    Sampler,
    Sender,
    StorePoller,
    Verdict,
    add_search_options,
    bench_collector,
    env_note,
    latencies,
    metric_sum,
    percentile,
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

TARGET = 50_000
HEADER = (f"{'who':>9} {'rate/s':>8} {'secs':>5} {'sent':>8} {'sent/s':>8} {'stored%':>8} "
          f"{'verdict':>7} {'cpu%':>5} {'rss MB':>6} {'store p50':>9} {'p99 ms':>7} "
          f"{'follow p50':>10} {'p99 ms':>7} {'kernel drops':>12}")


def row(who: str, verdict: Verdict, seconds: float, rest: str = "") -> None:
    """Print one trial as it ends."""
    print(f"{who:>9} {verdict.asked:8.0f} {seconds:5.1f} {verdict.sent:8d} "
          f"{verdict.achieved:8.0f} {100 * (1 - verdict.loss):8.2f} {verdict.mark:>7}"
          f"{rest}", flush=True)


def collector_trial(rate: float, args: argparse.Namespace, short: set[float]) -> bool:
    """One rate against a fresh collector; whether it held. A rate the sender could not
    keep is added to `short`."""
    seconds = trial_duration(rate, args.duration, args.max_lines)
    with bench_collector() as collector:
        sender = Sender(udp_port(collector), rate, seconds)
        try:
            collector.start(timeout=30)
            poller = StorePoller(collector.data_dir)
            follower = Follower(collector.http_port)
            follower.start()
            follower.connected.wait(10)
            poller.start()
            sampler = Sampler(lambda: processes(collector))
            sampler.start()
            result = sender.go()
            metrics = settle(collector, result.sent)
            sampler.stop()
            time.sleep(0.2)
            poller.stop()
            follower.stop()
        finally:
            sender.close()
    stored = int(metrics.get("collector_store_lines_committed_total", 0))
    verdict = Verdict(rate, result.sent, stored, result.seconds, args.tolerance)
    store_ms = latencies(result.probes, poller.seen)
    follow_ms = latencies(result.probes, follower.seen)
    drops = metric_sum(metrics, "collector_udp_kernel_drops_total")
    row("collector", verdict, seconds,
        f" {sampler.cpu_percent:5.0f} {sampler.peak_rss / 2**20:6.0f} "
        f"{percentile(store_ms, 0.5):9.1f} {percentile(store_ms, 0.99):7.1f} "
        f"{percentile(follow_ms, 0.5):10.1f} {percentile(follow_ms, 0.99):7.1f} "
        f"{drops:12d}")
    if verdict.sender_short:
        short.add(rate)
    return verdict.held


def bare_trial(rate: float, args: argparse.Namespace, short: set[float]) -> bool:
    """One rate against the bare receiver; whether it counted every datagram. A rate the
    sender could not keep is added to `short`."""
    seconds = trial_duration(rate, args.duration, args.max_lines)
    receiver = BareReceiver()
    sender = Sender(receiver.port, rate, seconds)
    try:
        result = sender.go()
        time.sleep(0.5)
    finally:
        sender.close()
        counted = receiver.stop()
    verdict = Verdict(rate, result.sent, counted, result.seconds, args.tolerance)
    row("bare", verdict, seconds)
    if verdict.sender_short:
        short.add(rate)
    return verdict.held


def main() -> int:
    """Search both figures by turns, print every trial, then the figures and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_options(parser, budget=210.0, max_lines=450_000)
    args = parser.parse_args()
    spec = search_spec(args)
    print(f"# ingest benchmark: {env_note()}; {search_note(args)}")
    print(HEADER)
    collector, bare = RateSearch(spec), RateSearch(spec)
    short: dict[str, set[float]] = {"collector": set(), "bare": set()}
    budget = Budget(args.budget)
    interleave([
        (collector, retrying(lambda r: collector_trial(r, args, short["collector"]),
                             args.retries)),
        (bare, retrying(lambda r: bare_trial(r, args, short["bare"]), args.retries))],
        budget.out_of_time)
    print(f"\ncollector max zero-loss rate: {collector.describe()} (target {TARGET})"
          + sender_note(collector.bad, short["collector"]))
    print(f"bare uvloop receiver max zero-loss rate (baseline, same run): "
          f"{bare.describe()}" + sender_note(bare.bad, short["bare"]))
    print(ratio_line("collector", collector.figure, "baseline", bare.figure)
          + f"; {budget.elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
