"""Cluster ingest benchmark: the highest rate of aes-256-cbc logcrypto lines one cluster
node (one NATS server, replicas = 1) takes with zero loss, for this tree and for another
checkout of the code (`--other DIR`, e.g. the commit before a change), searched by turns
so the machine's load drifts alike for both.

A trial is one rate for a few seconds against a fresh nats-server and a fresh collector
node, fed pre-encrypted datagrams by bench/sender.py; it holds when every line sent was
accepted by the listener (`collector_lines_accepted_total`) and materialized into the
node's store (`collector_store_lines_committed_total`), i.e. published, acknowledged,
read back from the stream and committed. Each trial prints the node's CPU (% of one
core, main process and store writer) and JetStream's publish latency (mean, ms).

    git archive HEAD~1 | (mkdir -p /tmp/old && tar -x -C /tmp/old)
    .venv/bin/python bench/accept.py --other /tmp/old     # about five minutes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    CRYPTO_LISTENER,
    Budget,
    Sampler,
    Sender,
    Verdict,
    add_search_options,
    env_note,
    processes,
    retrying,
    search_note,
    search_spec,
    sender_note,
    trial_duration,
)
from bench.search import RateSearch, interleave
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster

NODE = """[cluster]
nats = {nats}
node = bench
replicas = 1

[listener:bench]
udp = 127.0.0.1:{{port:bench}}
{listener}
"""
ACCEPTED = 'collector_lines_accepted_total{listener="bench"}'
COMMITTED = "collector_store_lines_committed_total"


def settled(collector: CollectorProcess, sent: int, timeout: float = 60.0
            ) -> dict[str, float]:
    """The node's metrics once every line sent is committed, or once nothing has moved
    for two seconds (lines were lost), or at the time-out."""
    last: dict[str, float] = {}
    moved = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = collector.metrics()
        if metrics.get(COMMITTED, 0) >= sent and metrics.get(ACCEPTED, 0) >= sent:
            return metrics
        if (metrics.get(COMMITTED), metrics.get(ACCEPTED)) != (last.get(COMMITTED),
                                                               last.get(ACCEPTED)):
            moved = time.monotonic()
        elif time.monotonic() - moved > 2.0:
            return metrics
        last = metrics
        time.sleep(0.1)
    return last


def trial(who: str, rate: float, args: argparse.Namespace, tree: Path | None,
          short: set[float]) -> bool:
    """One rate against a fresh nats-server and node; whether it held."""
    seconds = trial_duration(rate, args.duration, args.max_lines)
    env = {"PYTHONPATH": str(tree)} if tree is not None else {}
    with tempfile.TemporaryDirectory(prefix="bench-accept-") as workdir:
        nats = NatsCluster(Path(workdir) / "nats", 1).start()
        collector = CollectorProcess(
            Path(workdir), config=NODE.format(nats=nats.urls[0], listener=CRYPTO_LISTENER),
            env=env, settings={"log-level": "warning"})
        sender = Sender(collector.port("bench"), rate, seconds)
        try:
            collector.start(timeout=40)
            sampler = Sampler(lambda: processes(collector))
            sampler.start()
            result = sender.go()
            metrics = settled(collector, result.sent)
            sampler.stop()
        finally:
            sender.close()
            collector.close()
            nats.stop()
    stored = int(min(metrics.get(COMMITTED, 0), metrics.get(ACCEPTED, 0)))
    verdict = Verdict(rate, result.sent, stored, result.seconds, args.tolerance)
    count = metrics.get("collector_cluster_publish_seconds_count", 0)
    total = metrics.get("collector_cluster_publish_seconds_sum", 0)
    mean_ms = 1000 * total / count if count else 0.0
    print(f"{who:>7} {rate:8.0f} {seconds:5.1f} {verdict.sent:8d} {verdict.achieved:8.0f} "
          f"{100 * (1 - verdict.loss):8.2f} {verdict.mark:>7} {sampler.cpu_percent:5.0f} "
          f"{count:8.0f} {mean_ms:8.2f}", flush=True)
    if verdict.sender_short:
        short.add(rate)
    return verdict.held


def main() -> int:
    """Search both figures by turns, print every trial, then the two figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_options(parser, budget=300.0, max_lines=300_000)
    parser.add_argument("--other", type=Path, default=None,
                        help="another checkout's root, searched by turns as `other`")
    args = parser.parse_args()
    spec = search_spec(args)
    print(f"# cluster ingest benchmark: {env_note()}; {search_note(args)}")
    print(f"{'who':>7} {'rate/s':>8} {'secs':>5} {'sent':>8} {'sent/s':>8} {'stored%':>8} "
          f"{'verdict':>7} {'cpu%':>5} {'batches':>8} {'ack ms':>8}")
    trees: dict[str, Path | None] = {"this": None}
    if args.other is not None:
        trees["other"] = args.other.resolve()
    searches = {who: RateSearch(spec) for who in trees}
    short: dict[str, set[float]] = {who: set() for who in trees}
    budget = Budget(args.budget)

    def oracle(who: str) -> Callable[[float], bool]:
        return retrying(lambda r: trial(who, r, args, trees[who], short[who]),
                        args.retries)

    interleave([(searches[who], oracle(who)) for who in trees], budget.out_of_time)
    for who, search in searches.items():
        print(f"{who} ({trees[who] or 'this tree'}) max zero-loss rate: "
              f"{search.describe()}" + sender_note(search.bad, short[who]))
    print(f"# {budget.elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
