"""Quantiles from a Prometheus histogram as `/metrics` exposes it (pure).

A collector's `/metrics` has only cumulative bucket counts (`NAME_bucket{le="0.005"} 12`),
not the observations, so a quantile is estimated the way Prometheus's
`histogram_quantile` does: find the bucket holding the wanted rank and interpolate
linearly inside it. The estimate is only as fine as the buckets; a rank in the `+Inf`
bucket answers the highest finite bound (a lower bound, as Prometheus does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Buckets = list[tuple[float, float]]  # (upper bound, cumulative count), ascending


def buckets(metrics: Mapping[str, float], name: str) -> Buckets:
    """The `le` bounds and cumulative counts of histogram `name`, ascending (`+Inf` as
    infinity); series with labels other than `le` are summed per bound."""
    prefix = f"{name}_bucket{{"
    summed: dict[float, float] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix):
            continue
        bound = _le(key[len(prefix):-1])
        summed[bound] = summed.get(bound, 0.0) + value
    return sorted(summed.items())


def _le(labels: str) -> float:
    for part in labels.split(","):
        label, _, quoted = part.partition("=")
        if label.strip() == "le":
            return float(quoted.strip().strip('"'))  # float("+Inf") is inf
    raise ValueError(f"a histogram bucket without an le label: {{{labels}}}")


def merge(series: Iterable[Buckets]) -> Buckets:
    """Several histograms with the same bounds (one per node) as one."""
    summed: dict[float, float] = {}
    for one in series:
        for bound, count in one:
            summed[bound] = summed.get(bound, 0.0) + count
    return sorted(summed.items())


def quantile(series: Buckets, fraction: float) -> float:
    """The `fraction` quantile (0..1) by linear interpolation inside its bucket; nan when
    the histogram is empty."""
    if not 0 <= fraction <= 1:
        raise ValueError("a quantile is a fraction between 0 and 1")
    if not series or series[-1][1] <= 0:
        return math.nan
    rank = fraction * series[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in series:
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        if not math.isinf(bound):
            lower = bound
        below = count
    return lower
