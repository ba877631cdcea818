"""Which stateful alerts were firing when the collector stopped, from what the outbox
holds: the newest notification of each alert (`Notification.alert`), and whether it is
`firing`.

Pure: no I/O and no clock. The engine re-opens what this finds (AlarmEngine.restore), so
that an alert paged before a restart is still resolved, or repeated, after it.
"""

from __future__ import annotations

from collections.abc import Iterable

from alarms.notification import RESOLVED, Notification


def _newest_first(notification: Notification) -> tuple[float, float, bool]:
    # A resolved notification made in the same instant as a firing one came after it.
    return (notification.created_at, notification.last_seen,
            notification.status == RESOLVED)


def latest_per_alert(notifications: Iterable[Notification],
                     limit: int | None = None) -> list[Notification]:
    """The newest notification of each alert among `notifications` (any order, any
    state; grouped ones taken apart into their members), newest first; at most `limit`
    alerts, the most recently notified kept."""
    parts = [part for n in notifications for part in n.parts() if part.alert]
    parts.sort(key=_newest_first, reverse=True)
    newest: dict[str, Notification] = {}
    for part in parts:
        if part.alert in newest:
            continue
        if limit is not None and len(newest) >= limit:
            break
        newest[part.alert] = part
    return list(newest.values())


def still_firing(notifications: Iterable[Notification],
                 limit: int | None = None) -> list[Notification]:
    """The newest notification of each alert whose newest one is `firing`, oldest
    first (the order they are re-opened in)."""
    latest = latest_per_alert(notifications, limit)
    return [n for n in reversed(latest) if n.status != RESOLVED]
