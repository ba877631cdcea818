"""Bounds on the alarm state that senders control, and the count of what they evicted.

Every structure keyed by something a sender chooses (its source name, its message) is
bounded, so a flood of distinct sources or messages levels memory off instead of growing
it. When a structure is full, its oldest entry goes (LRU for the silence watch, which
moves a source to the back each time it logs; oldest-first for the others), and the
eviction is counted per structure (`collector_alarms_state_evicted_total{structure}`) and
logged, at most once per structure every `LOG_EVERY` seconds so that a flood cannot also
flood the log. What an eviction means for each structure:

- `context` (per app): a source's last lines, kept for a mail's context. The evicted
  source's next alarm comes without context.
- `silence` (per app and alarm-silence rule): when each watched source last logged. An
  evicted source cannot raise a silence alarm until it logs again.
- `silence_match` (per app and rule): whether a source matches the rule's source regex, a
  cache; an evicted source is matched again.
- `segfault` (per app): backtraces being assembled. An evicted assembly is not lost: it
  is sent at once with what it has, marked incomplete.
- `backlog` (per app): when each full listen queue (source, socket, fd) was last
  reported full, to find when it clears (alarm-resolve). An evicted queue is not
  resolved.
- `alerts` (all apps): the stateful alerts whose firing notification was sent
  (alarms.lifecycle). An evicted alert is neither repeated nor resolved.
- `storm` (all apps): alarm-freq's last message per app, alarm and source. An evicted one
  lets that source's next message through as a first one.
- `incoming`: notifications fired but not yet written to the outbox (they queue only
  while the outbox cannot be written). The oldest are dropped, each named in the log.
- `pending`: notifications waiting for delivery. The oldest waiting (not in flight) become
  dead letters, kept in the outbox with `last_error` saying why; `collector alarms retry`
  sends them again.
- `dead_letters`: dead letters in the outbox, bounded in count and age; the oldest are
  deleted, counted, and the deletion is logged with their ids.
- `groups` (alarms.grouping, apps with alarm-group-wait): when each group was last sent
  and when its waiting members go. An evicted group's next notification starts a new
  group (it waits group-wait); members already waiting keep their time.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("alarms.bounds")

LOG_EVERY = 60.0


@dataclass(frozen=True)
class Bounds:
    """The limits (see the module docstring); tests shrink them."""

    sources: int = 10_000  # per app: context, segfault assemblies, backlog; per rule: silence
    alerts: int = 100_000  # open stateful alerts (alarms.lifecycle), all apps together
    storms: int = 100_000  # (app, alarm, source) anti-storm states, all apps together
    incoming: int = 10_000  # notifications waiting to be written to the outbox
    pending: int = 10_000  # notifications waiting to be delivered
    dead_letters: int = 10_000  # dead letters kept in the outbox
    dead_letter_age: float = 7 * 86400.0  # seconds a dead letter is kept


DEFAULT = Bounds()


class Evictions:
    """Counts evictions per structure and logs them, rate-limited per structure."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter[str] = Counter()
        self._clock = clock
        self._logged: dict[str, float] = {}

    def evicted(self, structure: str, bound: int, count: int = 1, **context: object) -> None:
        """`count` entries of `structure` (holding at most `bound`) were evicted; the
        first eviction of a structure is logged at once, later ones at most every
        LOG_EVERY seconds (with the running total)."""
        self.counts[structure] += count
        now = self._clock()
        last = self._logged.get(structure)
        if last is None or now - last >= LOG_EVERY:
            self._logged[structure] = now
            log.warning("alarm_state_evicted", structure=structure, bound=bound,
                        evicted=count, evicted_total=self.counts[structure], **context)
