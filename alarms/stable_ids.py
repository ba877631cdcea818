"""Notification ids derived from what raised them, for cluster mode (docs/CLUSTER.md).

A line-driven notification is named by its place in the shared log (stream sequence,
record index in the message) and by the alarm and condition; a time-driven one (a silence,
a backtrace that never ended) by the app, alarm, source, condition and the log time it is
about (the silence's last line, the assembly's start). Replaying the same log therefore
raises the same ids, and a new alarms leader that raises again what the old one already
wrote to the outbox finds it there (create-if-absent) instead of sending it twice.

The form is today's: `msg_`, 12 hex digits of milliseconds (so ids still sort by time),
then 20 hex digits of a SHA-256 of the position: a valid KV key and webhook-id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from alarms.notification import new_id


@dataclass(frozen=True, slots=True)
class IdKey:
    """What a notification is about. `origin` is (stream sequence, record index) for a
    line-driven one and None for a time-driven one; `ordinal` tells apart several
    notifications of one alarm and condition raised by the same record or moment."""

    app: str
    alarm: str
    source: str
    condition: str
    about: float
    origin: tuple[int, int] | None
    ordinal: int = 0
    status: str = "firing"
    # The stateful alert's instance (Event.alert) for a resolved or repeated notification:
    # two listen queues of one source may resolve at the same log time.
    alert: str = ""


def random_id(key: IdKey) -> str:
    """Single-node mode: today's time-ordered random id, whatever the key."""
    return new_id()


def stable_id(key: IdKey) -> str:
    """The same id for the same key, on every node and every replay."""
    if key.origin is not None:
        seq, index = key.origin
        what = f"line\0{seq}\0{index}\0{key.app}\0{key.alarm}\0{key.condition}\0{key.ordinal}"
    else:
        what = (f"tick\0{key.app}\0{key.alarm}\0{key.source}\0{key.condition}\0"
                f"{key.about!r}\0{key.ordinal}")
    if key.status != "firing":
        # Firing ids keep the form they had before resolved notifications existed.
        what += f"\0{key.status}"
    if key.alert:
        what += f"\0alert\0{key.alert}"
    digest = hashlib.sha256(what.encode()).hexdigest()[:20]
    return f"msg_{max(0, int(key.about * 1000)):012x}{digest}"
