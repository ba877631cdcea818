"""A listener's counters, plain integers bumped on the hot path and read at scrape time."""

from __future__ import annotations

from collections import Counter
from typing import Protocol, runtime_checkable

# Distinct (app, source) pairs kept for lost-line counts: senders name them, so their
# number is theirs to choose; past this, the lines are counted under OTHER.
MAX_LOST_SERIES = 1024
OTHER = ("_other", "_other")


@runtime_checkable
class BoundedState(Protocol):
    """A decoder that keeps state its senders make it hold, within bounds."""

    evicted: Counter[str]

    def held(self) -> dict[str, int]:
        """What it holds now, by kind (`streams`, `pending_datagrams`, ...)."""
        ...


class ListenerStats:
    """Datagrams and lines received, accepted and dropped (by reason) for one listener."""

    __slots__ = ("datagrams", "datagrams_accepted", "dropped", "escaped", "evicted", "lines",
                 "lines_dropped", "lost", "max_lost_series")

    def __init__(self, max_lost_series: int = MAX_LOST_SERIES) -> None:
        self.datagrams = 0
        self.datagrams_accepted = 0
        self.lines = 0
        self.escaped = 0
        self.dropped: Counter[str] = Counter()
        self.lines_dropped: Counter[str] = Counter()
        # Lines lost upstream, by (app, source), as the wire format reports them.
        self.lost: Counter[tuple[str, str]] = Counter()
        self.max_lost_series = max_lost_series
        # State given up or folded to stay within a bound, by reason (the listener's own;
        # a decoder may keep more).
        self.evicted: Counter[str] = Counter()

    def count_lost(self, app: str, source: str, count: int) -> None:
        """Add lines lost from (app, source), under OTHER once the series are at their
        bound (so /metrics cannot grow without bound either)."""
        key = (app, source)
        lost = self.lost
        if key not in lost and len(lost) >= self.max_lost_series:
            key = OTHER
            self.evicted["lost_series"] += 1
        lost[key] += count
