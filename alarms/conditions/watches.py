"""Conditions beyond uWSGI's: a source falling silent, and N matches within T seconds."""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import UTC, datetime

from alarms.bounds import DEFAULT, Evictions
from alarms.conditions.event import Event
from alarms.spec import RateRule, SilenceRule
from collector.regex import compile_regex


class SilenceWatch:
    """`alarm-silence`: a source that has logged before says nothing for `seconds`.

    Alarms once per silence; the source logging again re-arms it. Tracks at most
    `max_sources` sources, the one that logged least recently forgotten first, and caches
    whether a source matches the rule's regex for as many (alarms.bounds).
    """

    def __init__(self, rule: SilenceRule, max_sources: int = DEFAULT.sources,
                 evictions: Evictions | None = None) -> None:
        self.rule = rule
        self._search = compile_regex(rule.source_regex).search if rule.source_regex else None
        # OrderedDicts: evicting the oldest of a dict is O(holes left at its front).
        self._watched: OrderedDict[str, bool] = OrderedDict()
        self._last: OrderedDict[str, float] = OrderedDict()
        self._alarmed: set[str] = set()
        self._max = max_sources
        self._evictions = evictions if evictions is not None else Evictions()

    def seen(self, source: str, at: float) -> None:
        """A line from `source` at time `at`."""
        watched = self._watched.get(source) if self._search is not None else True
        if watched is None:
            watched = self._search is None or self._search(source) is not None
            if len(self._watched) >= self._max:
                self._watched.popitem(last=False)
                self._evictions.evicted("silence_match", self._max)
            self._watched[source] = watched
        if not watched:
            return
        last = self._last
        if source in last:
            last.move_to_end(source)
        elif len(last) >= self._max:
            # The source that logged least recently (the order is last-seen order).
            gone, _ = last.popitem(last=False)
            self._alarmed.discard(gone)
            self._evictions.evicted("silence", self._max, rule=self.rule.alarm)
        last[source] = at
        self._alarmed.discard(source)

    def sizes(self) -> dict[str, int]:
        """Entries per structure (for /metrics)."""
        return {"silence": len(self._last), "silence_match": len(self._watched)}

    def expire(self, now: float) -> list[Event]:
        """Events for sources silent for the rule's time, each once."""
        events: list[Event] = []
        limit = self.rule.seconds
        # Oldest first (dict order is last-seen order), so the scan stops early.
        for source, last in self._last.items():
            if now - last < limit:
                break
            if source in self._alarmed:
                continue
            self._alarmed.add(source)
            stamp = datetime.fromtimestamp(last, UTC).isoformat(timespec="seconds")
            events.append(Event(
                (self.rule.alarm,), "silence", source,
                f"{source} has logged nothing for {now - last:.0f} s "
                f"(alarm-silence {limit:g} s; last line at {stamp})", now,
                facts={"last_seen": last, "seconds": limit}))
        return events


class RateWatch:
    """`alarm-rate`: at least `count` matching lines within `seconds`, across sources.

    After it alarms the window starts again empty, so the next alarm takes another `count`
    matches (and alarm-freq still applies on top).
    """

    def __init__(self, rule: RateRule) -> None:
        self.rule = rule
        self._times: deque[float] = deque()

    def hit(self, source: str, line: str, at: float) -> Event | None:
        """A matching line; an Event when the threshold is reached."""
        times = self._times
        times.append(at)
        horizon = at - self.rule.seconds
        while times and times[0] < horizon:
            times.popleft()
        if len(times) < self.rule.count:
            return None
        first = times[0]
        count = len(times)
        times.clear()
        return Event((self.rule.alarm,), "rate", source,
                     f"{count} lines matching {self.rule.regex!r} within "
                     f"{self.rule.seconds:g} s (alarm-rate {self.rule.count}/"
                     f"{self.rule.seconds:g}); the last: {line}", at,
                     facts={"count": count, "threshold": self.rule.count,
                            "seconds": self.rule.seconds, "regex": self.rule.regex},
                     first_seen=first, count=count,
                     storm_key=f"rate {self.rule.regex}")
