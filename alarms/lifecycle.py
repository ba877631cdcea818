"""The alert lifecycle: which stateful alerts are firing, and when to say so again or say
that they resolved.

A condition that has a state (a full listen queue, a silent source, a rate over its
threshold) names its instance in `Event.alert`; the conditions themselves find when it
clears and raise a `resolved` Event for it. This module, after alarm-freq, keeps per
(app, alarm, condition, source, instance) the episode whose firing notification was
actually emitted, so that:

- a resolved notification goes out only for an alert whose firing one did (one that
  alarm-freq held back entirely has nothing to resolve), and once per episode;
- an alert still firing is sent again every `every` seconds after its last notification
  (alarm-repeat, or an Alertmanager's re-post before its endsAt passes), bypassing
  alarm-freq.

Pure state, no I/O and no clock: times are what the caller passes. Bounded: at most
`bound` open episodes, the one opened or notified least recently evicted first (counted
as structure `alerts`): an evicted alert is neither repeated nor resolved.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass

from alarms.bounds import DEFAULT, Evictions
from alarms.conditions.event import Event
from alarms.notification import Notification
from alarms.notifiers.alertmanager import repost_every
from alarms.spec import AppRules

# Conditions whose alert is the rule's across sources, not one source's: an alarm-rate
# window counts every source's lines, so its firing and resolved notifications pair
# whatever source logged the line that crossed the threshold.
SOURCELESS = frozenset({"rate"})

AlertId = tuple[str, str, str, str, str]  # (app, alarm, condition, source, instance)


def alert_id(app: str, alarm: str, event: Event) -> AlertId:
    """The identity of `event`'s alert for `alarm` (its `alert` must be set)."""
    source = "" if event.condition in SOURCELESS else event.source
    return (app, alarm, event.condition, source, event.alert)


def tracks(rules: AppRules) -> bool:
    """Whether the app's stateful conditions keep the state that finds their end: for
    resolved notifications, alarm-repeat, or an Alertmanager's re-posts."""
    return rules.resolve or rules.repeat > 0 or any(
        spec.plugin == "alertmanager" for spec in rules.alarms.values())


def repeat_intervals(rules: AppRules) -> dict[str, float]:
    """Per alarm, seconds between notifications of an alert still firing (0: never):
    alarm-repeat, or sooner for an Alertmanager, which must hear again of an alert
    before its endsAt passes."""
    every: dict[str, float] = {}
    for name, spec in rules.alarms.items():
        seconds = rules.repeat
        if spec.plugin == "alertmanager":
            repost = repost_every(spec.arg)
            seconds = min(seconds, repost) if seconds > 0 else repost
        every[name] = seconds
    return every


@dataclass(slots=True)
class Episode:
    """An alert firing since its first notification: the last firing notification
    sent, and when (in the log's time) it was sent, to time the next repeat."""

    last: Notification
    first_seen: float
    sent_at: float
    every: float
    storm_key: str = ""
    repeats: int = 0


class Lifecycle:
    """The open episodes of all apps' stateful alerts (see the module docstring)."""

    def __init__(self, bound: int = DEFAULT.alerts, evictions: Evictions | None = None
                 ) -> None:
        self._open: OrderedDict[AlertId, Episode] = OrderedDict()
        # (due, tiebreak, alert) for episodes that repeat; entries of episodes since
        # closed or notified again are skipped (or pushed again) when they come up.
        self._due: list[tuple[float, int, AlertId]] = []
        self._pushes = 0
        self._bound = bound
        self._evictions = evictions if evictions is not None else Evictions()

    def __len__(self) -> int:
        """Open episodes."""
        return len(self._open)

    def fired(self, key: AlertId, notification: Notification, at: float,
              every: float, storm_key: str = "") -> None:
        """A firing notification for `key` was emitted at log time `at` (alarm-freq's key
        `storm_key`); repeat it every `every` seconds (0: never) while no other
        notification follows."""
        episode = self._open.get(key)
        if episode is not None:
            episode.last = notification
            episode.sent_at = at
            episode.every = every
            episode.storm_key = storm_key
            self._open.move_to_end(key)
            return
        if len(self._open) >= self._bound:
            self._open.popitem(last=False)
            self._evictions.evicted("alerts", self._bound)
        self._open[key] = Episode(notification, notification.first_seen or at, at, every,
                                  storm_key)
        if every > 0:
            self._push(at + every, key)

    def resolve(self, key: AlertId) -> Episode | None:
        """End `key`'s episode: the episode if one was open (its firing notification was
        emitted), else None (nothing to resolve)."""
        return self._open.pop(key, None)

    def drop(self, key: AlertId) -> None:
        """Forget `key` without resolving it (its app or alarm is gone)."""
        self._open.pop(key, None)

    def drop_app(self, app: str) -> None:
        """Forget every alert of `app` without resolving it (its conditions restarted)."""
        for key in [k for k in self._open if k[0] == app]:
            del self._open[key]

    def due(self, now: float) -> list[tuple[AlertId, Episode, float]]:
        """(alert, episode, when) of each repeat due by `now`, each marked sent at
        `when`: the log time it is due at, so a replay names it alike. Repeats missed
        while nothing ticked are not sent in a burst: the next one is due `every` after
        the latest of them."""
        found: list[tuple[AlertId, Episode, float]] = []
        heap = self._due
        while heap and heap[0][0] <= now:
            _, _, key = heapq.heappop(heap)
            episode = self._open.get(key)
            if episode is None or episode.every <= 0:
                continue
            when = episode.sent_at + episode.every
            if when > now:
                # Notified again since this entry was pushed: wait from that notification.
                self._push(when, key)
                continue
            while when + episode.every <= now:
                when += episode.every
            episode.sent_at = when
            episode.repeats += 1
            found.append((key, episode, when))
            self._push(when + episode.every, key)
        if len(heap) > 2 * len(self._open) + 64:
            # Closed episodes' entries pile up only while they wait to come due: rebuild.
            self._due = [(e.sent_at + e.every, i, k) for i, (k, e)
                         in enumerate(self._open.items()) if e.every > 0]
            heapq.heapify(self._due)
        return found

    def _push(self, due: float, key: AlertId) -> None:
        self._pushes += 1
        heapq.heappush(self._due, (due, self._pushes, key))
