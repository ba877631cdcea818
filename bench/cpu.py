"""CPU figures of a benchmark trial and what they say about its limit (pure).

A trial measures CPU seconds per group of processes (a node's main process, its store
writer, the nats-servers, the senders) and the whole machine's busy seconds over the same
window. From those: µs per line, % of one core per group, and a sentence naming what
limits the rate: the machine's cores (everything busy together), one single-threaded
process at a core, or nothing seen (then it is not CPU: socket buffers, a wait).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# A single-threaded process at or above this share of one core is at its limit (a
# sampled process rarely shows a full 100 %: it waits on a socket or a lock now and then).
PROCESS_SATURATED = 0.85
# The machine is saturated when its busy time is at or above this share of all its cores.
MACHINE_SATURATED = 0.90


@dataclass(frozen=True)
class CpuWindow:
    """CPU seconds by group over `seconds` of wall time, and the machine's busy seconds
    (all processes, everyone's) over the same window on `cores` cores. `sizes` gives the
    number of processes of a group that has more than one; groups in `multithreaded`
    (nats-server: Go) can use more than one core, the others are one thread each."""

    by_group: Mapping[str, float]
    seconds: float
    machine_busy: float
    cores: int
    sizes: Mapping[str, int] = field(default_factory=dict)
    multithreaded: frozenset[str] = frozenset()

    def core_share(self, group: str) -> float:
        """The group's CPU as a share of one core (1.0 = one core busy all the time)."""
        return self.by_group.get(group, 0.0) / self.seconds if self.seconds > 0 else 0.0

    @property
    def ours(self) -> float:
        """CPU seconds of every measured group together."""
        return sum(self.by_group.values())

    @property
    def machine_share(self) -> float:
        """The machine's busy time as a share of all its cores."""
        if self.seconds <= 0 or self.cores <= 0:
            return 0.0
        return self.machine_busy / (self.seconds * self.cores)

    @property
    def others(self) -> float:
        """Busy seconds of processes outside the benchmark (another job on the machine)."""
        return max(0.0, self.machine_busy - self.ours)

    def group_total(self, prefix: str) -> float:
        """CPU seconds of every group whose name starts with `prefix`."""
        return sum(v for k, v in self.by_group.items() if k.startswith(prefix))

    def per_process(self, group: str) -> float:
        """The group's share of one core per process in it."""
        return self.core_share(group) / max(1, self.sizes.get(group, 1))

    def busiest(self) -> tuple[str, float]:
        """The single-threaded group whose processes are busiest, and their share of one
        core each ("", 0 with none)."""
        single = [group for group in self.by_group if group not in self.multithreaded]
        if not single:
            return "", 0.0
        group = max(single, key=self.per_process)
        return group, self.per_process(group)

    def projected_ceiling(self, lines: int, ignore: frozenset[str] = frozenset({"senders"})
                          ) -> tuple[str, float]:
        """With a core for every process, the single-threaded process (not in `ignore`:
        the load generators) that would saturate first and the rate (lines/s of the whole
        setup) at which it would, its CPU per line taken as constant (batches grow a
        little with the rate, so this is a lower estimate). ("", nan) without lines."""
        candidates = [group for group in self.by_group
                      if group not in self.multithreaded and group not in ignore]
        if not candidates or lines <= 0:
            return "", float("nan")
        group = max(candidates, key=self.per_process)
        per_line = self.by_group[group] / max(1, self.sizes.get(group, 1)) / lines
        return group, 1 / per_line if per_line > 0 else float("inf")


def us_per_line(cpu_seconds: float, lines: int) -> float:
    """CPU microseconds per line; nan with no lines."""
    return 1e6 * cpu_seconds / lines if lines > 0 else float("nan")


def limit_note(window: CpuWindow) -> str:
    """What limited a trial, from its CPU: the cores, one process, or not the CPU."""
    group, share = window.busiest()
    machine = window.machine_share
    spread = ", ".join(
        f"{name}{_size(window, name)} {100 * window.core_share(name):.0f} %"
        for name in sorted(window.by_group, key=lambda n: -window.by_group[n]))
    others = 100 * window.others / window.seconds if window.seconds > 0 else 0.0
    detail = (f"machine {100 * machine:.0f} % of {window.cores} cores busy (other jobs "
              f"{others:.0f} % of a core); by process, % of one core: {spread}")
    if machine >= MACHINE_SATURATED:
        return f"the machine's cores: every core busy, the most in {group}; {detail}"
    if share >= PROCESS_SATURATED:
        return f"one process at a core's limit: {group} ({100 * share:.0f} %); {detail}"
    return f"not CPU (no core and no process saturated); {detail}"


def _size(window: CpuWindow, group: str) -> str:
    size = window.sizes.get(group, 1)
    return f" ({size} processes)" if size > 1 else ""


def split_node_cost(one: float, each_of_two: float) -> tuple[float, float]:
    """A node's CPU per line, split by what it scales with, from the same rate measured
    with one node (`one` µs per line) and with two (`each_of_two`, per node, per line of
    the whole setup). A node receives and publishes its share of the lines (r µs per line
    it receives) and materializes every line of the cluster (m µs per line): one = r + m
    and each_of_two = r / 2 + m. Returns (r, m); either can come out negative from noise,
    which says the difference is below what the measurement resolves."""
    return 2 * (one - each_of_two), 2 * each_of_two - one


def nodes_ceiling(receive: float, materialize: float, nodes: int) -> float:
    """Lines/s of `nodes` nodes when each node's process with these costs (µs per line)
    has a core of its own and the load is split evenly: 1e6 / (r / N + m)."""
    per_line = receive / nodes + materialize
    return 1e6 / per_line if per_line > 0 else float("inf")
