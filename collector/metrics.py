"""Figures for /metrics, exposed with prometheus-client.

Components keep their figures as plain integers on the hot path (an attribute increment,
no locks, no label lookups) and turn them into prometheus-client metric families only when
/metrics is scraped. What is observed off the per-line path (a batch's commit time, an
alarm's delivery time) goes into prometheus-client histograms, one per running server:
they are made here unregistered, so that several servers in one process (the tests) do
not share them. The registry, label escaping and the text format are the library's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DELIVERY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

__all__ = ["BATCH_BUCKETS", "DELIVERY_BUCKETS", "Histogram", "Metric", "counter", "exposition",
           "gauge", "histogram", "histogram_families"]


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    """A counter family to fill with `add_metric([label values], value)`."""
    return CounterMetricFamily(name, documentation, labels=list(labels))


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    """A gauge family to fill with `add_metric([label values], value)`."""
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def histogram(name: str, documentation: str, buckets: Sequence[float],
              labels: Sequence[str] = ()) -> Histogram:
    """A histogram owned by one server (unregistered; see the module docstring)."""
    return Histogram(name, documentation, labelnames=list(labels), buckets=list(buckets),
                     registry=None)


def histogram_families(source: Histogram) -> Iterator[Metric]:
    """The histogram's families without its `_created` series, which would make every
    scrape differ and which no dashboard here reads."""
    for family in source.collect():
        family.samples = [s for s in family.samples if not s.name.endswith("_created")]
        yield family


class _Source(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def exposition(collect: Callable[[], Iterable[Metric]]) -> bytes:
    """The Prometheus text format (0.0.4) of what `collect()` yields at this moment."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Source(collect))
    return generate_latest(registry)
