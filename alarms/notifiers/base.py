"""The notifier interface and the services some notifiers need."""

from __future__ import annotations

import socket
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
    """What the running collector lends notifiers: a way to write into an app's stream,
    and the address of its API (for links back to the lines, e.g. Alertmanager's
    generatorURL)."""

    publish: Callable[[list[Record]], bool]
    next_ids: Callable[[int], int]
    api_url: str = "http://127.0.0.1:8080"


def api_url(host: str, port: int) -> str:
    """The API's address as a link elsewhere can use it: a wildcard listen address
    (0.0.0.0, ::) becomes this machine's name; an IPv6 address gets its brackets."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - compared, not bound
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
