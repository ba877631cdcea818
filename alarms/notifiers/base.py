"""The notifier interface and the services some notifiers need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from alarms.notification import Notification
from collector.record import Record


class Notifier(Protocol):
    """Delivers notifications for one alarm instance."""

    plugin: str

    async def send(self, notification: Notification) -> str:
        """Deliver once; return a short outcome ("HTTP 200", "exit 0"); raise
        NotifierError (permanent=True when retrying cannot help)."""
        ...


@dataclass(frozen=True)
class Services:
    """What the running collector lends notifiers: a way to write into an app's stream."""

    publish: Callable[[list[Record]], bool]
    next_ids: Callable[[int], int]
