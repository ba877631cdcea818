"""What the running server is made of, handed to the API and to components."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from collector.config.model import Config
from collector.fanout import Hub
from collector.ingest import Ingest
from collector.listen.receivers import Listener
from collector.metrics import Metric
from collector.store.base import Store


class Component(Protocol):
    """A part of the server that starts after the core and stops before it (alarms)."""

    async def start(self, context: Context) -> None:
        """Start; may add consumers to `context.ingest`."""
        ...

    async def stop(self) -> None:
        """Finish in-flight work and stop."""
        ...

    async def reload(self, config: Config) -> None:
        """Apply a reloaded config's settings for this part, from the next record on."""
        ...

    def routes(self) -> Sequence[web.RouteDef]:
        """HTTP routes this component serves."""
        ...

    def metric_families(self) -> Iterable[Metric]:
        """Figures for /metrics."""
        ...


@dataclass
class Context:
    """The running server's parts."""

    config: Config
    store: Store
    hub: Hub
    ingest: Ingest
    listeners: list[Listener] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    reloads: Counter[str] = field(default_factory=Counter)
    """SIGHUP reloads by result (`ok`, `failed`), for /metrics."""
    health: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Extra /healthz fields by name, filled by components (the cluster's quorum)."""


CONTEXT: web.AppKey[Context] = web.AppKey("context", Context)
