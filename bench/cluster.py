"""Cluster benchmark (issue 9): zero-loss lines/s of one collector node and of two on one
NATS JetStream cluster, beside single-node mode, with CPU per line, publish latency and
the time from kill -9 of the alarms leader to the first alarm delivered by another node.

Three searches take turns (bench/search.py: doubling from `--start`, then bisecting), so
the machine's load drifts alike for all: `single` is single-node mode (no `[cluster]`, the
first baseline), `one` is one node in cluster mode, `two` is two nodes in cluster mode with
the load split over both (each node's own bench.sender on its own UDP port at half the
rate). Cluster nodes share one NATS cluster for the run: three `nats-server` on loopback
with R3 streams (`--nats 1`: one server, R1). All run on this one machine, so the ratio
two/one shows what the cluster costs, not what it gains. A trial holds when every line
sent is committed to the store of every node (`collector_store_lines_committed_total`)
within `--lag` seconds of the senders' end (issue 9: every node shows every line within a
second; counted for up to `--wait` seconds, a trial past the lag is LATE), none twice, and
the senders kept the rate. A short trial's backlog hides in buffers, so the summary also
gives the end-to-end rate of the figure's trial: lines over the time from the senders'
start until every node had them.

Per trial: each node's CPU µs per line sent to the setup (main process and store writer),
the nats-servers' (all together), publish-to-ack p50/p99 from the nodes'
`collector_cluster_publish_seconds` histograms (interpolated in its buckets), the time
until every node had every line, and the whole machine's busy share. At the end: the
figures and their ratios, what limited the two-node search at its first rate not held
(from CPU: the cores, one process, or not CPU), and a projection for a machine with a core
per process. Then the failover part (bench/cluster_failover.py).

Columns of a trial: `every%` the share of lines sent that the node with fewest committed
(`<`: an upper bound, the wait stopped once lines were certainly lost), `node µs/line`
each node's CPU (main + writer) per line sent to the setup, `nats µs` all nats-servers'
CPU per line, `l/msg` lines per JetStream message, `pub p50`/`p99` publish-to-ack, `all in
s` seconds from the senders' end until every node had every line, `mach%` the whole
machine's busy share of its cores while sending (other jobs included), `drops` datagrams
the kernel dropped at the nodes' sockets, `refused` lines the publishers refused.

    .venv/bin/python bench/cluster.py                        # about five minutes
    .venv/bin/python bench/cluster.py --budget 60 --failovers 0
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster_failover import Failover, Skipped, measure
from bench.cluster_trial import Setup, TrialResult, run_trial
from bench.cpu import limit_note, nodes_ceiling, split_node_cost, us_per_line
from bench.harness import (
    Budget,
    add_search_options,
    env_note,
    ratio_line,
    search_note,
    search_spec,
    sender_note,
)
from bench.search import Oracle, RateSearch, interleave
from tests.support.nats import NatsCluster

SETUPS = (Setup("single", 1, cluster=False), Setup("one", 1, cluster=True),
          Setup("two", 2, cluster=True))
HEADER = (f"{'setup':>6} {'rate/s':>7} {'secs':>4} {'sent':>7} {'sent/s':>7} "
          f"{'every%':>7} {'verdict':>7} {'node µs/line':>13} {'nats µs':>7} {'l/msg':>5} "
          f"{'pub p50':>7} {'p99 ms':>6} {'all in s':>8} {'mach%':>5} {'drops':>5} "
          f"{'refused':>7}")


def row(result: TrialResult, seconds: float) -> str:
    """One trial's line (the columns are in the module's docstring)."""
    verdict = result.verdict
    everywhere = f"{'<' if result.gave_up else ''}{100 * result.everywhere:.2f}"
    nodes = "/".join(f"{result.node_us_per_line(name):.0f}" for name in result.nodes)
    p50, p99 = result.publish_ms
    return (f"{result.setup.name:>6} {verdict.asked:7.0f} {seconds:4.1f} {verdict.sent:7d} "
            f"{verdict.achieved:7.0f} {everywhere:>7} {result.mark:>7} "
            f"{nodes:>13} {result.nats_us_per_line():7.1f} {result.lines_per_message:5.1f} "
            f"{p50:7.1f} {p99:6.1f} "
            f"{result.visible_after:8.2f} {100 * result.sending.machine_share:5.0f} "
            f"{result.drops:5d} {result.refused:7d}")


class Runs:
    """Every trial of one setup, by rate (the last run of a rate that was retried)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.by_rate: dict[float, TrialResult] = {}
        self.short: set[float] = set()

    def note(self, result: TrialResult) -> None:
        """Keep a trial."""
        self.by_rate[result.verdict.asked] = result
        if result.verdict.sender_short:
            self.short.add(result.verdict.asked)

    def at(self, rate: float | None) -> TrialResult | None:
        """The trial at `rate`, if there was one."""
        return None if rate is None else self.by_rate.get(rate)


def oracle(setup: Setup, runs: Runs, args: argparse.Namespace,
           nats_cluster: NatsCluster) -> Oracle:
    """The search's trial for `setup`, retried `args.retries` times when it misses."""
    def trial(rate: float) -> bool:
        for _ in range(1 + args.retries):
            began = time.monotonic()
            result = run_trial(setup, rate, duration=args.duration, max_lines=args.max_lines,
                               tolerance=args.tolerance, wait=args.wait, lag=args.lag,
                               nats_cluster=nats_cluster)
            runs.note(result)
            print(row(result, time.monotonic() - began), flush=True)
            if result.held:
                return True
        return False
    return trial


def cpu_lines(runs: dict[str, Runs], searches: dict[str, RateSearch]) -> list[str]:
    """CPU per line at each setup's highest rate held, by process."""
    lines = ["CPU µs per line sent to the setup, at its highest rate held (main + store "
             "writer per node; nats: all servers):"]
    for name, search in searches.items():
        result = runs[name].at(search.good)
        if result is None:
            lines.append(f"  {name:>6}: no rate held")
            continue
        sent = result.verdict.sent
        nodes = ", ".join(
            f"node {node} {result.node_us_per_line(node):.1f} (main "
            f"{1e6 * result.cpu.by_group.get(node + ':main', 0) / sent:.1f} + writer "
            f"{1e6 * result.cpu.by_group.get(node + ':writer', 0) / sent:.1f})"
            for node in result.nodes)
        p50, p99 = result.publish_ms
        publish = (f"; publish ack p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
                   f"{result.lines_per_message:.1f} lines per message"
                   if not math.isnan(p50) else "")
        lines.append(f"  {name:>6} at {search.good:.0f}/s: {nodes}; nats "
                     f"{result.nats_us_per_line():.1f}{publish}; end to end "
                     f"{result.end_to_end:.0f} lines/s (every line on every node "
                     f"{result.visible_after:.2f} s after the senders' end)")
    return lines


def limit_lines(runs: dict[str, Runs], searches: dict[str, RateSearch]) -> list[str]:
    """What limited each cluster setup at its first rate not held, and a projection."""
    lines: list[str] = []
    for name in ("one", "two"):
        search = searches[name]
        missed = runs[name].at(search.bad)
        if missed is not None:
            lines.append(f"limit of {name} at {search.bad:.0f}/s (first rate not held): "
                         + limit_note(missed.sending))
        held = runs[name].at(search.good)
        if held is not None:
            group, ceiling = held.cpu.projected_ceiling(held.verdict.sent)
            lines.append(f"  with a core per process, {name} would stop at about "
                         f"{ceiling:.0f}/s, when {group} reaches a full core (its CPU per "
                         f"line at {search.good:.0f}/s held constant)")
    return lines


def scaling_lines(runs: dict[str, Runs]) -> list[str]:
    """The main process's CPU per line with one node and with two at the highest rate both
    held, split into receiving (scales with a node's share) and materializing (every node
    applies every line), and what that allows with a core per process."""
    common = [rate for rate, result in runs["one"].by_rate.items()
              if result.held and (two := runs["two"].at(rate)) is not None and two.held]
    if not common:
        return ["(no rate held by both one and two: no cost split)"]
    rate = max(common)
    one, two = runs["one"].by_rate[rate], runs["two"].by_rate[rate]

    def main_us(result: TrialResult, node: str) -> float:
        return us_per_line(result.cpu.by_group.get(f"{node}:main", 0.0), result.verdict.sent)

    c1 = main_us(one, "a")
    c2 = sum(main_us(two, node) for node in two.nodes) / len(two.nodes)
    receive, materialize = split_node_cost(c1, c2)
    ceilings = {n: nodes_ceiling(receive, materialize, n) for n in (1, 2)}
    bound = 1e6 / materialize if materialize > 0 else float("inf")
    return [f"main process CPU per line at {rate:.0f}/s: one node {c1:.1f} µs, each of two "
            f"{c2:.1f} µs -> receiving + publishing {receive:.1f} µs per line a node "
            f"receives, materializing {materialize:.1f} µs per line of the cluster",
            f"  with a core per process, the main processes allow one node "
            f"{ceilings[1]:.0f}/s, two {ceilings[2]:.0f}/s (ratio "
            f"{ceilings[2] / ceilings[1]:.2f}); no number of nodes passes {bound:.0f}/s "
            f"while every node materializes every line"]


def failover_lines(outcome: list[Failover] | Skipped) -> list[str]:
    """The failover part's summary."""
    if isinstance(outcome, Skipped):
        return [f"kill -9 of the alarms leader -> first alarm by another node: SKIPPED "
                f"({outcome.reason})"]
    return [f"kill -9 of the alarms leader ({one.killed}) -> first alarm delivered by "
            f"another node: {one.to_alarm:.2f} s (the survivor reported itself leader "
            f"after {one.to_leader:.2f} s); alarm lines sent from the kill on: "
            f"{one.probes}, never delivered: {one.probes_missing}, delivered twice: "
            f"{one.probes_twice}; webhook-ids delivered twice so far: {one.ids_twice}"
            for one in outcome]


def main() -> int:
    """Start NATS, search the three figures by turns, print every trial, the figures,
    then the failover part."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_options(parser, budget=220.0, max_lines=300_000)
    parser.set_defaults(duration=2.5, start=8_000.0, resolution=0.1)
    parser.add_argument("--nats", type=int, choices=(1, 3), default=3,
                        help="nats-server processes: 3 (R3, as deployed) or 1 (R1)")
    parser.add_argument("--wait", type=float, default=20.0,
                        help="seconds after the senders end for every node to have every "
                             "line")
    parser.add_argument("--setups", default="single,one,two",
                        type=lambda text: set(text.split(",")),
                        help="which searches to run (comma-separated; the others print 0)")
    parser.add_argument("--lag", type=float, default=1.0,
                        help="a trial holds only if every node had every line within this "
                             "many seconds of the senders' end (issue 9: within a second)")
    parser.add_argument("--failovers", type=int, default=2,
                        help="kill -9 rounds of the alarms leader (0: skip the part)")
    args = parser.parse_args()
    spec = search_spec(args)
    print(f"# cluster benchmark: {env_note()}; NATS: {args.nats} nats-server on loopback, "
          f"R{args.nats}; {search_note(args)}; held also needs every line on every node "
          f"within {args.lag:g} s of the senders' end (counted for up to {args.wait:g} s)")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        nats_cluster = NatsCluster(Path(tmp), args.nats).start()
        try:
            print(HEADER)
            runs = {setup.name: Runs(setup) for setup in SETUPS}
            searches = {setup.name: RateSearch(spec) for setup in SETUPS}
            budget = Budget(args.budget)
            interleave([(searches[setup.name],
                         oracle(setup, runs[setup.name], args, nats_cluster))
                        for setup in SETUPS if setup.name in args.setups],
                       budget.out_of_time)
            outcome = (measure(nats_cluster, args.failovers) if args.failovers
                       else Skipped("--failovers 0"))
        finally:
            nats_cluster.stop()
    single, one, two = (searches[setup.name] for setup in SETUPS)
    print()
    print(f"single-node mode (no [cluster], baseline): {single.describe()}"
          + sender_note(single.bad, runs["single"].short))
    print(f"one node, cluster mode:                    {one.describe()}"
          + sender_note(one.bad, runs["one"].short))
    print(f"two nodes, cluster mode (load split):      {two.describe()}"
          + sender_note(two.bad, runs["two"].short))
    print(ratio_line("one", one.figure, "single", single.figure) + "; "
          + ratio_line("two", two.figure, "one", one.figure))
    for line in (*cpu_lines(runs, searches), *limit_lines(runs, searches),
                 *scaling_lines(runs), *failover_lines(outcome)):
        print(line)
    print(f"# {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
