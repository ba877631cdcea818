"""`log:[TEXT]`: the alarm written into the app's own log stream.

The line starts with `[uwsgi-alarm]`, which uWSGI (and this collector) never alarms on, so a
`log-alarm` cannot loop on its own output: `[uwsgi-alarm] ALARM: ...` when firing,
`[uwsgi-alarm] RESOLVED: ...` when the condition cleared.
"""

from __future__ import annotations

from alarms.errors import NotifierError
from alarms.notification import RESOLVED, Notification
from alarms.notifiers.base import Services
from collector.record import Record


def check(arg: str) -> str | None:
    """Any argument is a valid prefix."""
    return None


class LogNotifier:
    """Publishes an alarm record (kind "alarm") into the app's stream."""

    plugin = "log"

    def __init__(self, prefix: str, services: Services) -> None:
        self._prefix = prefix.strip()
        self._services = services

    async def send(self, notification: Notification) -> str:
        """Store and fan out the alarm line."""
        word = "RESOLVED" if notification.status == RESOLVED else "ALARM"
        head = f"[uwsgi-alarm] {word}: {self._prefix} " if self._prefix else \
            f"[uwsgi-alarm] {word}: "
        lines = notification.text().rstrip("\n").split("\n")
        first = self._services.next_ids(len(lines))
        records = [Record(first + i, notification.last_seen or None, notification.app,
                          notification.source, "collector", "alarm",
                          (head if i == 0 else "[uwsgi-alarm] ") + line, "alarm")
                   for i, line in enumerate(lines)]
        if not self._services.publish(records):
            raise NotifierError("the store's queue is full")
        return f"{len(records)} lines"
