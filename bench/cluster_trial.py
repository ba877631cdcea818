"""One trial of bench/cluster.py: fresh collector nodes, a rate split over them, and
whether every line sent became readable on every node.

A setup is single-node mode (no `[cluster]`, the baseline) or N nodes in cluster mode on
a NATS cluster that lives for the whole run; between trials the `LOGS` stream is deleted,
so each trial's nodes start on an empty log. Each node gets its own bench.sender process
on its own UDP port at rate/N. Collectors, senders and samplers are bench/harness.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import nats
import nats.js.errors
import psutil

from bench.cpu import CpuWindow, us_per_line
from bench.harness import (
    Sender,
    SendResult,
    Verdict,
    bench_collector,
    metric_sum,
    processes,
    trial_duration,
    udp_port,
)
from bench.histogram import buckets, merge, quantile
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster

PUBLISH_HISTOGRAM = "collector_cluster_publish_seconds"
COMMITTED = "collector_store_lines_committed_total"
APPLIED = "collector_cluster_applied_sequence"
NODE_NAMES = "abcdefgh"
STALL_SECONDS = 3.0


@dataclass(frozen=True)
class Setup:
    """Who a search measures: `nodes` collectors, in cluster mode or not."""

    name: str
    nodes: int
    cluster: bool


def cluster_section(nats: NatsCluster, node: str, extra: str = "") -> str:
    """The `[cluster]` ini section of node `node` on `nats` (replicas: one per server)."""
    return (f"\n[cluster]\nnats = {','.join(nats.urls)}\nnode = {node}\n"
            f"replicas = {len(nats.nodes)}\n{extra}")


def reset_stream(nats_cluster: NatsCluster) -> None:
    """Delete every stream, `LOGS` and the KV buckets (they are streams too), so the next
    nodes start on an empty cluster. Deleting `LOGS` alone is not enough: its sequence
    starts again at 1 while the alarms floor kept in KV still names the old stream's
    position, and the next leader then held back every alarm below it."""
    async def reset() -> None:
        client = await nats.connect(nats_cluster.urls, connect_timeout=5,
                                    allow_reconnect=False)
        try:
            js = client.jetstream(timeout=10)
            for name in await js.streams_info():
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(name.config.name or "")
        finally:
            await client.close()
    asyncio.run(reset())


def nats_processes(nats_cluster: NatsCluster | None) -> list[psutil.Process]:
    """The running nats-server processes."""
    if nats_cluster is None:
        return []
    return [psutil.Process(node.process.pid) for node in nats_cluster.nodes
            if node.process is not None]


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (everything but idle and iowait)."""
    times = psutil.cpu_times()
    busy: float = sum(times) - times.idle - getattr(times, "iowait", 0.0)
    return busy


def children_cpu() -> float:
    """CPU seconds of this process's children that have been reaped (the senders)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class TrialResult:
    """What one trial measured."""

    setup: Setup
    verdict: Verdict
    committed: list[int]
    cpu: CpuWindow  # from the senders' start until every node had every line (or gave up)
    sending: CpuWindow  # while the senders sent: the shares of a core at the rate asked
    visible_after: float  # seconds from the senders' end until every node had every line
    publish_ms: tuple[float, float]  # p50, p99 of the publish-to-ack histogram
    drops: int
    refused: int
    nodes: list[str] = field(default_factory=list)
    messages: int = 0  # messages in the stream (the trial's stream starts empty)
    lag: float = float("inf")  # seconds after the senders' end within which lines count

    @property
    def gave_up(self) -> bool:
        """The wait stopped early because lines were certainly lost: the nodes' counts are
        from that moment, not final."""
        return self.drops + self.refused > self.verdict.tolerance * self.verdict.sent

    @property
    def everywhere(self) -> float:
        """The share of lines sent that the node with fewest has; when the wait gave up,
        the share not certainly lost (an upper bound: the count was not final)."""
        sent = self.verdict.sent
        if not sent:
            return 0.0
        if self.gave_up:
            return max(0, sent - self.drops - self.refused) / sent
        return 1 - self.verdict.loss

    @property
    def lines_per_message(self) -> float:
        """Lines per message in the stream, on average (over what the node furthest on
        had applied when the wait ended); nan outside cluster mode."""
        return max(self.committed) / self.messages if self.messages else float("nan")

    @property
    def doubled(self) -> bool:
        """Some node committed more lines than were sent: a line stored twice (which would
        otherwise hide a loss in the count)."""
        return any(count > self.verdict.sent for count in self.committed)

    @property
    def late(self) -> bool:
        """Every line came, but not within `lag` seconds of the senders' end."""
        return self.verdict.held and not self.visible_after <= self.lag

    @property
    def held(self) -> bool:
        """Every line on every node within `lag` seconds, none twice, at the rate asked."""
        return self.verdict.held and not self.doubled and not self.late

    @property
    def mark(self) -> str:
        """A word for the trial's row."""
        return "DOUBLED" if self.doubled else "LATE" if self.late else self.verdict.mark

    @property
    def end_to_end(self) -> float:
        """Lines/s from the senders' start until every node had every line: what the
        whole path kept up with over the trial (nan if some line never came)."""
        total = self.verdict.seconds + self.visible_after
        return self.verdict.sent / total if total > 0 else float("nan")

    def node_cpu(self, node: str) -> float:
        """CPU seconds of node `node` (main process and store writer)."""
        return (self.cpu.by_group.get(f"{node}:main", 0.0)
                + self.cpu.by_group.get(f"{node}:writer", 0.0))

    def node_us_per_line(self, node: str) -> float:
        """Node `node`'s CPU µs per line sent to the whole setup."""
        return us_per_line(self.node_cpu(node), self.verdict.sent)

    def nats_us_per_line(self) -> float:
        """The nats-servers' CPU µs per line sent, all servers together."""
        return us_per_line(self.cpu.group_total("nats:"), self.verdict.sent)


def wait_everywhere(nodes: Sequence[CollectorProcess], expected: int, timeout: float,
                    allowed_loss: float = 0.0) -> tuple[list[dict[str, float]], float]:
    """Poll every node until each has committed `expected` lines, or nothing moved for
    STALL_SECONDS, or `timeout`, or more than `allowed_loss` lines are certainly lost
    (dropped by the kernel or refused by a publisher: no point waiting); the last metrics
    of each and the seconds it took (nan when some node never got there)."""
    began = time.monotonic()
    moved = began
    last: list[float] = []
    metrics: list[dict[str, float]] = []
    while time.monotonic() - began < timeout:
        metrics = [node.metrics() for node in nodes]
        committed = [m.get(COMMITTED, 0.0) for m in metrics]
        if all(c >= expected for c in committed):
            return metrics, time.monotonic() - began
        if lost_for_sure(metrics) > allowed_loss:
            break
        if committed != last:
            moved, last = time.monotonic(), committed
        elif time.monotonic() - moved > STALL_SECONDS:
            break
        time.sleep(0.1)
    return metrics, float("nan")


def lost_for_sure(metrics: Sequence[dict[str, float]]) -> int:
    """Lines the nodes dropped in the kernel's socket buffer or refused to publish."""
    return sum(metric_sum(m, "collector_udp_kernel_drops_total")
               + metric_sum(m, "collector_cluster_refused_lines_total") for m in metrics)


class CpuMeter:
    """CPU seconds of groups of processes and of the whole machine since it was made."""

    def __init__(self, groups: dict[str, list[psutil.Process]], sizes: dict[str, int]
                 ) -> None:
        self._groups = groups
        self._sizes = sizes
        self._before = {group: _cpu(procs) for group, procs in groups.items()}
        self._busy = machine_busy()
        self._began = time.monotonic()

    def window(self, extra: dict[str, float]) -> CpuWindow:
        """The window so far; `extra` adds groups measured otherwise (the senders)."""
        by_group = {group: _cpu(procs) - self._before[group]
                    for group, procs in self._groups.items()}
        by_group.update(extra)
        return CpuWindow(by_group, time.monotonic() - self._began,
                         machine_busy() - self._busy, os.cpu_count() or 1, self._sizes,
                         frozenset(group for group in by_group if group.startswith("nats:")))


def go_all(senders: Sequence[Sender]) -> list[SendResult]:
    """Let every sender send at once; their reports."""
    with ThreadPoolExecutor(len(senders)) as pool:
        return list(pool.map(lambda sender: sender.go(), senders))


def start_all(nodes: Sequence[CollectorProcess]) -> None:
    """Start the nodes one after the other: the first creates the `LOGS` stream. (Started
    together on a fresh stream, both nodes create it at once and the second start took
    about 6 s instead of 0.5: its create waits for a time-out and retries.)"""
    for node in nodes:
        node.start(timeout=40)


def run_trial(setup: Setup, rate: float, *, duration: float, max_lines: int,
              tolerance: float, wait: float, lag: float, nats_cluster: NatsCluster | None
              ) -> TrialResult:
    """`rate` lines/s split over `setup`'s fresh nodes for about `duration` seconds;
    lines are counted for `wait` seconds after the senders end, and the trial holds if
    they were all on every node within `lag` of it."""
    seconds = trial_duration(rate, duration, max_lines)
    names = list(NODE_NAMES[:setup.nodes])
    if setup.cluster:
        assert nats_cluster is not None
        reset_stream(nats_cluster)
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(bench_collector(
            extra=cluster_section(nats_cluster, name) if setup.cluster and nats_cluster
            else "")) for name in names]
        senders = [Sender(udp_port(node), rate / len(nodes), seconds) for node in nodes]
        for sender in senders:
            stack.callback(sender.close)
        for sender in senders:
            sender.wait_ready()
        start_all(nodes)
        # The processes are taken once: a store writer restarted mid-trial would be missed,
        # and its restart shows in the trial's failure anyway.
        groups: dict[str, list[psutil.Process]] = {}
        for name, node in zip(names, nodes, strict=True):
            found = processes(node)
            groups[f"{name}:main"], groups[f"{name}:writer"] = found[:1], found[1:]
        for index, server in enumerate(nats_processes(nats_cluster)):
            groups[f"nats:n{index}"] = [server]
        meter = CpuMeter(groups, {"senders": len(senders)})
        children_before = children_cpu()
        results = go_all(senders)
        senders_cpu = {"senders": children_cpu() - children_before}
        sending = meter.window(senders_cpu)
        sent = sum(result.sent for result in results)
        metrics, visible_after = wait_everywhere(nodes, sent, wait, tolerance * sent)
        window = meter.window(senders_cpu)
        if lost_for_sure(metrics) > tolerance * sent:
            # The trial has failed; a node stopped with SIGTERM would first work off its
            # backlog (over 30 s seen at 56,000 lines/s), so it is killed instead (its
            # store writer commits what it has and exits at the end of its input).
            for node in nodes:
                node.close()
    committed = [int(m.get(COMMITTED, 0)) for m in metrics]
    verdict = Verdict(rate, sent, min(committed, default=0),
                      max(result.seconds for result in results), tolerance)
    histogram = merge(buckets(m, PUBLISH_HISTOGRAM) for m in metrics)
    return TrialResult(
        setup, verdict, committed, window, sending, visible_after,
        (1000 * quantile(histogram, 0.5), 1000 * quantile(histogram, 0.99)),
        sum(metric_sum(m, "collector_udp_kernel_drops_total") for m in metrics),
        sum(metric_sum(m, "collector_cluster_refused_lines_total") for m in metrics),
        names, int(max((m.get(APPLIED, 0.0) for m in metrics), default=0)), lag)


def _cpu(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for process in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total
