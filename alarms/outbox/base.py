"""The outbox interface: what the dispatcher needs of any backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from alarms.notification import Notification

# `silenced`: held back by a silence (whose id is the outcome) and never sent.
State = Literal["pending", "delivered", "dead", "silenced"]
STATES: tuple[State, ...] = ("pending", "delivered", "dead", "silenced")


@dataclass
class Entry:
    """A notification and where its delivery stands."""

    notification: Notification
    state: State = "pending"
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str | None = None
    outcome: str | None = None
    delivered_at: float | None = None
    updated_at: float = 0.0

    @property
    def id(self) -> str:
        """The notification's id (the outbox key, and the webhook-id)."""
        return self.notification.id

    def to_json(self) -> dict[str, Any]:
        """The entry as `GET /v1/alarms` shows it."""
        n = self.notification
        return {
            "id": n.id, "alarm": n.alarm, "plugin": n.plugin, "app": n.app,
            "source": n.source, "condition": n.condition, "message": n.message,
            "facts": n.facts, "first_seen": n.first_seen, "last_seen": n.last_seen,
            "count": n.count, "suppressed": n.suppressed, "created_at": n.created_at,
            "status": n.status, "group": n.group, "alert": n.alert,
            "state": self.state, "attempts": self.attempts,
            "next_attempt": self.next_attempt if self.state == "pending" else None,
            "last_error": self.last_error, "outcome": self.outcome,
            "delivered_at": self.delivered_at,
            "silence": self.outcome if self.state == "silenced" else None,
        }


class Outbox(Protocol):
    """Durable notification storage. `add` returns only once the notifications would
    survive the collector being killed; each later call records one step of a delivery."""

    async def open(self) -> list[Entry]:
        """Open or create; return the pending entries (to be sent again after a restart)."""
        ...

    async def add(self, notifications: Sequence[Notification], now: float,
                  dues: Sequence[float] | None = None) -> set[str]:
        """Keep new notifications as pending, due at once (or each at its time in `dues`,
        one per notification: grouping); the ids of those the outbox held already
        (raised again with the same id: in cluster mode, by a new leader), which are kept
        as they stand and are not to be scheduled again."""
        ...

    async def save(self, entry: Entry) -> None:
        """Record one step of a delivery: the entry's state, attempts, next attempt, last
        error and outcome as they now stand."""
        ...

    async def save_many(self, entries: Sequence[Entry]) -> None:
        """`save` for several entries, in one transaction."""
        ...

    async def trim_dead(self, keep: int, before: float) -> tuple[list[str], int]:
        """Delete dead letters last updated before `before`, then the oldest (by creation)
        beyond `keep`; the ids deleted and how many dead letters remain."""
        ...

    async def requeue(self, ids: Sequence[str] | None, now: float) -> list[Entry]:
        """Dead entries (those named, or all when `ids` is None) made pending again with
        their attempts reset; returns them."""
        ...

    async def recent(self, state: State | None = None, app: str | None = None,
                     limit: int = 100) -> list[Entry]:
        """The newest entries first, optionally of one state and app."""
        ...

    async def prune(self, before: float) -> int:
        """Forget delivered entries created before `before`; how many."""
        ...

    async def latest_alerts(self, limit: int) -> list[Notification]:
        """The newest notification of each stateful alert (`Notification.alert`; grouped
        notifications taken apart), whatever its state and status, newest first; at
        most `limit` alerts, the most recently notified (alarms.restore)."""
        ...

    async def close(self) -> None:
        """Finish pending writes and close."""
        ...
