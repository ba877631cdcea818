"""Prometheus text exposition from plain counters.

Components keep their figures as plain integers on the hot path (an attribute increment,
no locks, no label lookups) and describe them as `Family` objects only when /metrics is
scraped.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DELIVERY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Sample:
    """One value of a metric family, with its labels."""

    labels: Mapping[str, str]
    value: float
    suffix: str = ""


@dataclass
class Family:
    """A metric family: name, type, help text and samples."""

    name: str
    type: str
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> Family:
        """Append a sample and return self, for chaining."""
        self.samples.append(Sample(labels, value, suffix))
        return self


class Histogram:
    """A fixed-bucket histogram, safe to observe from one thread and read from another."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count one observation."""
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def family(self, name: str, help_text: str, **labels: str) -> Family:
        """The histogram as a Prometheus family."""
        family = Family(name, "histogram", help_text)
        self.add_to(family, **labels)
        return family

    def add_to(self, family: Family, **labels: str) -> None:
        """Append this histogram's samples (cumulative buckets, sum, count) to `family`."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        running = 0
        for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
            running += count
            family.add(running, "_bucket", **labels, le=_number(bound))
        family.add(total, "_sum", **labels)
        family.add(running, "_count", **labels)


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if value == int(value):
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(families: Iterable[Family]) -> str:
    """Prometheus text format 0.0.4."""
    out: list[str] = []
    for family in families:
        out.append(f"# HELP {family.name} {family.help}")
        out.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            name = family.name + sample.suffix
            out.append(f"{name}{{{labels}}} {_number(sample.value)}" if labels
                       else f"{name} {_number(sample.value)}")
    return "\n".join(out) + "\n"
