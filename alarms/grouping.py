"""When a grouped notification may be sent (alarm-group-wait, alarm-group-interval): pure.

With Alertmanager's meaning, per group (`Notification.group`: app, alarm and condition):
the first notification of a burst waits `wait` seconds, and the send then carries every
notification of the group that arrived meanwhile; later ones are batched, sent at most
once per `interval` after the last send; a group with nothing new for a whole `interval`
after its last send ends, and its next notification starts a new group (and waits `wait`
again).

The dispatcher asks `due(group, now)` as it writes each notification to the outbox (the
time is stored as the entry's next attempt, so a restart keeps it), tells `flushed` when
it starts a group's send, and `restored` what the outbox still held after a restart.

Bounded like alarms.bounds: at most `limit` groups are remembered (least recently used
go first, counted as `groups`); a forgotten group's next notification starts a new group.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from alarms.bounds import Evictions
from alarms.spec import AppRules

DEFAULT_LIMIT = 10_000


@dataclass(frozen=True)
class Timing:
    """One app's alarm-group-wait and alarm-group-interval, in seconds."""

    wait: float
    interval: float


def timings(rules: Iterable[AppRules]) -> dict[str, Timing]:
    """The apps that group (alarm-group-wait or -interval set), by app name; an app left
    out keeps today's behaviour: each notification on its own, at once."""
    return {app.app: Timing(app.group_wait, app.group_interval) for app in rules
            if app.group_wait > 0 or app.group_interval > 0}


@dataclass
class _Group:
    next_flush: float | None = None  # the send the group's waiting members join
    last_flush: float | None = None  # when its last send started


class GroupPolicy:
    """See the module docstring."""

    def __init__(self, limit: int = DEFAULT_LIMIT, evictions: Evictions | None = None
                 ) -> None:
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._limit = limit
        self._evictions = evictions if evictions is not None else Evictions()

    def __len__(self) -> int:
        """Groups remembered."""
        return len(self._groups)

    def _get(self, group: str) -> _Group:
        state = self._groups.get(group)
        if state is None:
            if len(self._groups) >= self._limit:
                oldest, _ = self._groups.popitem(last=False)
                self._evictions.evicted("groups", self._limit, group=oldest)
            state = self._groups[group] = _Group()
        else:
            self._groups.move_to_end(group)
        return state

    def due(self, group: str, timing: Timing, now: float) -> float:
        """When a notification of `group` arriving at `now` may be sent."""
        state = self._get(group)
        if state.next_flush is not None:
            return state.next_flush
        if state.last_flush is None or now - state.last_flush > timing.interval:
            # A new group (or one that had nothing new for a whole interval): wait.
            state.last_flush = None
            state.next_flush = now + timing.wait
        else:
            state.next_flush = state.last_flush + timing.interval
        return state.next_flush

    def flushed(self, group: str, at: float) -> None:
        """A send of `group` started at `at`: what arrives from now on waits for the
        next interval. A send before the group's next time (a retry of members whose
        first send failed) leaves that time as it is: what waits for it still goes then,
        not one more interval later."""
        state = self._get(group)
        if state.next_flush is not None and state.next_flush <= at:
            state.next_flush = None
        state.last_flush = at

    def restored(self, group: str, due: float, attempts: int, updated_at: float) -> None:
        """After a restart, an entry of `group` the outbox still holds: one not yet tried
        (`attempts` 0) waits for a send at `due`, which later arrivals join; one being
        retried was sent last at `updated_at`."""
        state = self._get(group)
        if attempts == 0:
            state.next_flush = due if state.next_flush is None else min(state.next_flush,
                                                                        due)
        elif state.last_flush is None or updated_at > state.last_flush:
            state.last_flush = updated_at
