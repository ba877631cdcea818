"""A listener's counters, plain integers bumped on the hot path and read at scrape time."""

from __future__ import annotations

from collections import Counter


class ListenerStats:
    """Datagrams and lines received, accepted and dropped (by reason) for one listener."""

    __slots__ = ("datagrams", "datagrams_accepted", "dropped", "escaped", "lines",
                 "lines_dropped", "lost")

    def __init__(self) -> None:
        self.datagrams = 0
        self.datagrams_accepted = 0
        self.lines = 0
        self.escaped = 0
        self.dropped: Counter[str] = Counter()
        self.lines_dropped: Counter[str] = Counter()
        # Lines lost upstream, by (app, source), as the wire format reports them.
        self.lost: Counter[tuple[str, str]] = Counter()
