"""Receivers benchmark (issue 10): the collector with `receivers = 1` and `receivers = 2`
on the same listener, fed by the C sender from several source sockets.

The collector is bench/peers.py's: a `crypto` aes-256-cbc listener, storage on and the 50
`log-alarm` rules of bench/alarms.py; only `receivers = K` is added. The sender
(bench/csender.c) replays the same pre-encrypted pool, paced, from `--sockets` source
sockets in turn, so the kernel's SO_REUSEPORT hash spreads the senders over the K
receivers (with K = 1 the main process reads the one socket, as before).

For each K the zero-loss rate is searched for (bench/search.py), the searches taking
turns trial by trial against a fresh collector each. Every trial notes CPU µs per stored
line per process: the main process, each receiver, the store writer. The summary gives
each K's rate, the ratio K=2/K=1, the per-process figures at each K's highest rate held,
and from them the rate a machine of `--project-cores` cores would hold with one main
process, one writer and the rest receivers (and which process is then the limit).

    .venv/bin/python bench/receivers.py                 # about five minutes, idle machine
    .venv/bin/python bench/receivers.py --budget 30     # a quick check that it works
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import csender
from bench.alarms import RULE_COUNT, alarm_section
from bench.harness import (
    Budget,
    Sampler,
    Verdict,
    add_search_options,
    bench_collector,
    env_note,
    metric_sum,
    processes,
    retrying,
    search_note,
    search_spec,
    sender_note,
    settle,
    trial_duration,
    udp_port,
)
from bench.peers import LISTENER, per_line, ratio, write_pools
from bench.search import RateSearch, interleave
from tests.support.collector_proc import CollectorProcess
from tests.support.webhook import WebhookServer

HEADER = (f"{'K':>2} {'rate/s':>8} {'secs':>5} {'sent':>8} {'sent/s':>8} {'stored%':>8} "
          f"{'verdict':>7} {'µs/line':>8} {'main':>6} {'recv':>13} {'writer':>6} "
          f"{'kdrops':>7}")


def role(process: psutil.Process) -> str:
    """`main`, `receiver`, `writer` (or `other`) for one of the collector's processes."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "other"
    if "collector.listen.receiver" in command:
        return "receiver"
    if "collector.store.writer" in command:
        return "writer"
    if " serve " in f"{command} ":
        return "main"
    return "other"


@dataclass(frozen=True)
class Figures:
    """One trial's CPU µs per stored line, by process."""

    held: bool
    main_us: float
    receivers_us: tuple[float, ...]
    writer_us: float

    @property
    def total_us(self) -> float:
        """Every process's CPU per line."""
        return self.main_us + sum(self.receivers_us) + self.writer_us


@dataclass
class Record:
    """Every trial of one K, by rate (a held run of a rate wins)."""

    trials: dict[float, Figures] = field(default_factory=dict)
    short: set[float] = field(default_factory=set)


def project(figures: Figures, cores: int) -> tuple[float, str]:
    """The rate `cores` cores would hold with one main process, one writer and the rest
    receivers, each process at these CPU figures per line, and the process that sets it.
    Receivers' work divides over them (the kernel spreads senders); main's and the
    writer's does not."""
    receivers = max(1, cores - 2)
    per_receiver_line = sum(figures.receivers_us)  # all receiving work, K=1 or K=2 alike
    limits = {"main": 1e6 / figures.main_us if figures.main_us > 0 else math.inf,
              "writer": 1e6 / figures.writer_us if figures.writer_us > 0 else math.inf,
              f"{receivers} receivers": (receivers * 1e6 / per_receiver_line
                                         if per_receiver_line > 0 else math.inf)}
    limit = min(limits, key=lambda name: limits[name])
    return limits[limit], limit


class Trials:
    """Trials of the collector with K receivers against the same pool."""

    def __init__(self, args: argparse.Namespace, binary: Path, pool: Path) -> None:
        self.args = args
        self.binary = binary
        self.pool = pool
        self.records: dict[int, Record] = {}

    def oracle(self, receivers: int) -> Callable[[float], bool]:
        """The search's oracle for K = `receivers`."""
        self.records[receivers] = Record()
        return retrying(lambda rate: self.trial(receivers, rate), self.args.retries)

    def trial(self, receivers: int, rate: float) -> bool:
        """One rate against a fresh collector with `receivers` receivers; whether every
        line was committed to its store."""
        seconds = trial_duration(rate, self.args.duration, self.args.max_lines)
        count = int(rate * seconds)
        hook = WebhookServer().start()
        try:
            listener = f"{LISTENER}\nreceivers = {receivers}"
            with bench_collector(listener, alarm_section(hook.url)) as collector:
                collector.start(timeout=30)
                samplers = self._samplers(collector, receivers)
                for sampler in samplers.values():
                    sampler.start()
                result = csender.send(self.binary, self.pool, udp_port(collector), rate,
                                      count, max_seconds=1.5 * seconds,
                                      sockets=self.args.sockets)
                metrics = settle(collector, result.sent)
                for sampler in samplers.values():
                    sampler.stop()
        finally:
            hook.stop()
        stored = int(metrics.get("collector_store_lines_committed_total", 0))
        verdict = Verdict(rate, result.sent, stored, result.seconds, self.args.tolerance)

        def us(name: str) -> float:
            sampler = samplers[name]
            return 1e6 * per_line(sampler.cpu_end - sampler.cpu_start, stored)

        figures = Figures(verdict.held, us("main"),
                          tuple(us(name) for name in samplers if name.startswith("r")),
                          us("writer"))
        drops = metric_sum(metrics, "collector_udp_kernel_drops_total")
        print(f"{receivers:>2} {verdict.asked:8.0f} {seconds:5.1f} {verdict.sent:8d} "
              f"{verdict.achieved:8.0f} {100 * (1 - verdict.loss):8.2f} {verdict.mark:>7} "
              f"{figures.total_us:8.2f} {figures.main_us:6.2f} "
              f"{'+'.join(f'{u:.1f}' for u in figures.receivers_us) or '-':>13} "
              f"{figures.writer_us:6.2f} {drops:7d}", flush=True)
        record = self.records[receivers]
        previous = record.trials.get(rate)
        if previous is None or not previous.held:
            record.trials[rate] = figures
        if verdict.sender_short:
            record.short.add(rate)
        return verdict.held

    @staticmethod
    def _samplers(collector: CollectorProcess, receivers: int) -> dict[str, Sampler]:
        """A CPU sampler per process: main, writer, r0..r(K-1) (none for K = 1: the
        main process receives)."""
        found = processes(collector)
        deadline = time.monotonic() + 10
        while receivers > 1 and sum(role(p) == "receiver" for p in found) < receivers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{receivers} receiver processes did not start")
            time.sleep(0.05)
            found = processes(collector)
        by_role: dict[str, list[psutil.Process]] = {}
        for process in found:
            by_role.setdefault(role(process), []).append(process)
        samplers = {"main": Sampler(lambda: by_role.get("main", [])[:1]),
                    "writer": Sampler(lambda: by_role.get("writer", []))}
        if receivers > 1:
            for index, process in enumerate(by_role.get("receiver", [])):
                samplers[f"r{index}"] = Sampler(_just(process))
        return samplers


def _just(process: psutil.Process) -> Callable[[], list[psutil.Process]]:
    return lambda: [process]


def summary(trials: Trials, searches: dict[int, RateSearch], cores: int,
            budget: Budget) -> None:
    """Each K's rate, the ratio, per-process CPU at each K's highest rate held, and the
    projection to `cores` cores."""
    print()
    for k, search in searches.items():
        print(f"receivers = {k} ({RULE_COUNT} rules, aes-256-cbc, store on, "
              f"{trials.args.sockets} sender sockets) max zero-loss rate: "
              f"{search.describe()}" + sender_note(search.bad, trials.records[k].short))
    ks = sorted(searches)
    if len(ks) >= 2:
        low, high = searches[ks[0]].figure, searches[ks[-1]].figure
        print(f"ratio receivers={ks[-1]}/receivers={ks[0]}, rate: {ratio(high, low):.2f}")
    for k in ks:
        figure = searches[k].figure
        figures = trials.records[k].trials.get(figure)
        if figures is None:
            print(f"receivers = {k}: no rate held, no CPU figures")
            continue
        receivers_us = ("+".join(f"{u:.1f}" for u in figures.receivers_us)
                        if figures.receivers_us else "(in main)")
        print(f"receivers = {k} at {figure:.0f} lines/s: CPU µs per line: main "
              f"{figures.main_us:.1f}, receivers {receivers_us}, writer "
              f"{figures.writer_us:.1f}; total {figures.total_us:.1f}")
        if k > 1:
            rate, limit = project(figures, cores)
            print(f"  projected on {cores} cores (1 main, 1 writer, {max(1, cores - 2)} "
                  f"receivers, CPU per line as here): {rate:,.0f} lines/s, limited by "
                  f"{limit}")
    if len(ks) >= 2:
        held = [{rate for rate, f in trials.records[k].trials.items() if f.held} for k in ks]
        common = set.intersection(*held)
        if common:
            top = max(common)
            parts = []
            for k in ks:
                f = trials.records[k].trials[top]
                parts.append(f"K={k} main {f.main_us:.1f} + receivers "
                             f"{sum(f.receivers_us):.1f} + writer {f.writer_us:.1f} = "
                             f"{f.total_us:.1f}")
            print(f"at {top:.0f} lines/s (the highest rate every K held), CPU µs per "
                  f"line: " + "; ".join(parts))
    print(f"searches took {budget.elapsed:.0f} s", flush=True)


def main() -> int:
    """Search each K's zero-loss rate by turns; print every trial and the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_search_options(parser, budget=300.0, max_lines=450_000)
    parser.add_argument("--receivers", default="1,2",
                        help="comma-separated K values to compare (default 1,2)")
    parser.add_argument("--sockets", type=int, default=8,
                        help="sender source sockets, taken in turn per batch")
    parser.add_argument("--project-cores", type=int, default=16,
                        help="cores to project the rate to from the per-process figures")
    args = parser.parse_args()
    ks = [int(k) for k in args.receivers.split(",")]
    binary = csender.build()
    print(f"# receivers benchmark: {env_note()}; {search_note(args)}; "
          f"{args.sockets} sender sockets")
    with tempfile.TemporaryDirectory(prefix="bench-receivers-") as workdir:
        started = time.monotonic()
        pool, _ = write_pools(Path(workdir), args.max_lines, 0)
        print(f"# pool encoded in {time.monotonic() - started:.0f} s; sender {binary}",
              flush=True)
        print(HEADER)
        trials = Trials(args, binary, pool)
        spec = search_spec(args)
        searches = {k: RateSearch(spec) for k in ks}
        budget = Budget(args.budget)
        interleave([(searches[k], trials.oracle(k)) for k in ks], budget.out_of_time)
        summary(trials, searches, args.project_cores, budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
