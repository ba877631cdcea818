"""Conditions beyond uWSGI's: a source falling silent, and N matches within T seconds;
and when each stateful condition clears (alarm-resolve): a silent source logging again,
a rate window passing without reaching its threshold, a listen queue no longer reported
full. Each raises its firing Events with `alert` naming its instance, and, when told to
`track`, a `resolved` Event for that instance when it clears (alarms.lifecycle decides
whether anyone is told)."""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import UTC, datetime

from alarms.bounds import DEFAULT, Evictions
from alarms.conditions.event import Event
from alarms.notification import RESOLVED
from alarms.spec import RateRule, SilenceRule
from collector.regex import compile_regex


class SilenceWatch:
    """`alarm-silence`: a source that has logged before says nothing for `seconds`.

    Alarms once per silence; the source logging again re-arms it. Tracks at most
    `max_sources` sources, the one that logged least recently forgotten first, and caches
    whether a source matches the rule's regex for as many (alarms.bounds).
    """

    def __init__(self, rule: SilenceRule, max_sources: int = DEFAULT.sources,
                 evictions: Evictions | None = None, *, track: bool = False) -> None:
        self.rule = rule
        self._track = track
        self._instance = f"silent {rule.seconds:g} s {rule.source_regex or ''}".rstrip()
        # Sources that logged again after their silence alarmed, until the next expire.
        self._ended: list[Event] = []
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
        alarmed = self._alarmed
        if alarmed and source in alarmed:
            if at <= last.get(source, at - 1.0):
                # A line from before the silence (a takeover's replay of a restored one).
                return
            alarmed.discard(source)
            if self._track:
                self._ended.append(self._logs_again(source, last.get(source, at), at))
        if source in last:
            last.move_to_end(source)
        elif len(last) >= self._max:
            # The source that logged least recently (the order is last-seen order).
            gone, _ = last.popitem(last=False)
            alarmed.discard(gone)
            self._evictions.evicted("silence", self._max, rule=self.rule.alarm)
        last[source] = at

    def alert_instance(self) -> str:
        """The `Event.alert` of this rule's alerts (one per silent source)."""
        return self._instance

    def restore(self, source: str, last: float) -> None:
        """`source` was found silent before a restart, its last line at `last`: alarmed,
        so its next line resolves it and it is not alarmed again meanwhile. A source
        already seen since is left as it is; restored sources go in last-seen order."""
        if source in self._last:
            return
        if len(self._last) >= self._max:
            self._evictions.evicted("silence", self._max, rule=self.rule.alarm)
            return
        self._last[source] = last
        self._alarmed.add(source)
        # Keep the scan of `expire` oldest first: move whatever came after `last` behind.
        for other in [s for s, t in self._last.items() if t > last]:
            self._last.move_to_end(other)

    def _logs_again(self, source: str, last: float, at: float) -> Event:
        """The resolved Event of a silent source that logged again at `at`."""
        limit = self.rule.seconds
        return Event((self.rule.alarm,), "silence", source,
                     f"{source} logs again after {at - last:.0f} s of silence "
                     f"(alarm-silence {limit:g} s)", at,
                     facts={"last_seen": last, "silent_for": at - last, "seconds": limit},
                     status=RESOLVED, alert=self._instance)

    def sizes(self) -> dict[str, int]:
        """Entries per structure (for /metrics)."""
        return {"silence": len(self._last), "silence_match": len(self._watched)}

    def expire(self, now: float) -> list[Event]:
        """Events for sources silent for the rule's time, each once; and the resolved
        Events of sources that logged again since the last call."""
        events: list[Event] = []
        if self._ended:
            events, self._ended = self._ended, []
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
                facts={"last_seen": last, "seconds": limit}, alert=self._instance))
        return events


class RateWatch:
    """`alarm-rate`: at least `count` matching lines within `seconds`, across sources.

    After it alarms the window starts again empty, so the next alarm takes another `count`
    matches (and alarm-freq still applies on top). Its alert is the rule's, across sources;
    when tracked, it resolves once a whole window passes after its last alarm without
    reaching the threshold again.
    """

    def __init__(self, rule: RateRule, *, track: bool = False) -> None:
        self.rule = rule
        self._times: deque[float] = deque()
        self._track = track
        self._fired_at: float | None = None

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
        if self._track:
            self._fired_at = at
        return Event((self.rule.alarm,), "rate", source,
                     f"{count} lines matching {self.rule.regex!r} within "
                     f"{self.rule.seconds:g} s (alarm-rate {self.rule.count}/"
                     f"{self.rule.seconds:g}); the last: {line}", at,
                     facts={"count": count, "threshold": self.rule.count,
                            "seconds": self.rule.seconds, "regex": self.rule.regex},
                     first_seen=first, count=count,
                     storm_key=f"rate {self.rule.regex}", alert=self.rule.regex)

    def restore(self, fired_at: float) -> None:
        """The rule's alert was firing before a restart, last at `fired_at`: it resolves
        a window after that unless the threshold is reached again (tracked only)."""
        if self._track and (self._fired_at is None or self._fired_at < fired_at):
            self._fired_at = fired_at

    def expire(self, now: float) -> list[Event]:
        """The resolved Event once a window has passed since the last alarm (tracked)."""
        fired = self._fired_at
        if fired is None or now - fired < self.rule.seconds:
            return []
        self._fired_at = None
        rule = self.rule
        return [Event((rule.alarm,), "rate", "",
                      f"fewer than {rule.count} lines matching {rule.regex!r} within the "
                      f"{rule.seconds:g} s since the last alarm (alarm-rate {rule.count}/"
                      f"{rule.seconds:g})", fired + rule.seconds,
                      facts={"threshold": rule.count, "seconds": rule.seconds,
                             "regex": rule.regex, "last_fired": fired},
                      status=RESOLVED, alert=rule.regex)]


class BacklogWatch:
    """The end of alarm-backlog's alerts: one per full listen queue (source, socket, fd),
    resolved once that queue has not been reported full for `after` seconds.

    Tracks at most `max_entries` queues, the one reported full least recently forgotten
    first (counted as structure `backlog`; a forgotten queue is not resolved).
    """

    def __init__(self, alarms: tuple[str, ...], after: float,
                 max_entries: int = DEFAULT.sources, evictions: Evictions | None = None
                 ) -> None:
        self._alarms = alarms
        self._after = after
        self._max = max_entries
        self._evictions = evictions if evictions is not None else Evictions()
        # (source, instance) -> (last reported full, socket, fd), in last-reported order.
        self._full: OrderedDict[tuple[str, str], tuple[float, str, int]] = OrderedDict()

    def __len__(self) -> int:
        """Queues being watched."""
        return len(self._full)

    def full(self, source: str, instance: str, socket: str, fd: int, at: float) -> None:
        """`source` reported the queue `instance` (`socket`, `fd`) full at `at`."""
        key = (source, instance)
        full = self._full
        known = full.get(key)
        if known is not None:
            full.move_to_end(key)
            # A replayed report older than a restored one does not move its time back.
            at = max(at, known[0])
        elif len(full) >= self._max:
            full.popitem(last=False)
            self._evictions.evicted("backlog", self._max)
        full[key] = (at, socket, fd)

    def restore(self, source: str, instance: str, socket: str, fd: int,
                last: float) -> None:
        """The queue `instance` of `source` was alarmed before a restart, last reported
        full at `last`: it resolves `after` seconds after that unless reported full
        again. A queue reported since is left as it is."""
        key = (source, instance)
        full = self._full
        if key in full:
            return
        if len(full) >= self._max:
            self._evictions.evicted("backlog", self._max)
            return
        full[key] = (last, socket, fd)
        # Keep the scan of `expire` oldest first: move whatever came after `last` behind.
        for other in [k for k, v in full.items() if v[0] > last]:
            full.move_to_end(other)

    def expire(self, now: float) -> list[Event]:
        """Resolved Events for queues not reported full for `after` seconds, each once."""
        events: list[Event] = []
        full = self._full
        after = self._after
        # Oldest first (dict order is last-reported order), so the scan stops early.
        while full:
            (source, instance), (last, socket, fd) = next(iter(full.items()))
            if now - last < after:
                break
            del full[(source, instance)]
            events.append(Event(
                self._alarms, "backlog", source,
                f'listen queue of socket "{socket}" (fd: {fd}) not reported full for '
                f"{after:g} s", last + after,
                facts={"socket": socket, "fd": fd, "last_full": last},
                status=RESOLVED, alert=instance))
        return events
