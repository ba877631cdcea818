"""The alarms as a part of the running collector: engine, outbox, dispatcher, API, figures.

The engine is an ingest consumer: it sees every record as it is accepted, on the event
loop, and only queues what fires. Everything slow (the outbox's disk, the notifiers'
network) happens in the dispatcher's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import structlog
from aiohttp import web

from alarms.api import AlarmsApi
from alarms.config import parse_app
from alarms.delivery import Dispatcher
from alarms.engine import AlarmEngine
from alarms.metrics import families
from alarms.notifiers.base import Notifier, Services
from alarms.notifiers.registry import build
from alarms.outbox.sqlite import SqliteOutbox
from collector.config.model import Config
from collector.context import Context
from collector.errors import StoreError
from collector.metrics import Family

log = structlog.get_logger("alarms")

TICK_SECONDS = 0.5
PRUNE_SECONDS = 3600.0
OUTBOX_FILE = "alarms.db"


class AlarmsComponent:
    """See the module docstring."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._rules = [parse_app(section) for section in config.apps]
        self._outbox = SqliteOutbox(config.store.data_dir / OUTBOX_FILE)
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: Dispatcher | None = None
        self._engine: AlarmEngine | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, context: Context) -> None:
        """Open the outbox, resume what it holds, and start seeing records."""
        pending = await self._outbox.open()
        self._session = aiohttp.ClientSession()
        services = Services(publish=context.ingest.publish, next_ids=context.ingest.next_ids)
        notifiers: dict[tuple[str, str], Notifier] = {
            (rules.app, spec.name): build(spec, rules.retry, services, self._session)
            for rules in self._rules for spec in rules.alarms.values()}
        self._dispatcher = Dispatcher(self._outbox, notifiers,
                                      {rules.app: rules.retry for rules in self._rules})
        self._engine = AlarmEngine(self._rules, self._dispatcher.submit)
        self._dispatcher.start(pending)
        context.ingest.add_consumer(self._engine)
        self._ticker = asyncio.create_task(self._tick(), name="alarm-ticker")
        log.info("alarms_started", apps=len(self._rules), alarms=len(notifiers),
                 pending=len(pending))

    async def _tick(self) -> None:
        engine, dispatcher = self._engine, self._dispatcher
        assert engine is not None
        assert dispatcher is not None
        next_prune = 0.0
        loop = asyncio.get_running_loop()
        failed = False
        while True:
            try:
                engine.tick()
                await dispatcher.trim_dead_letters()
            except Exception:
                # The ticker's one catch point: a bug in a time-driven condition is logged
                # once and the ticker goes on, so silences and backtraces still expire.
                if not failed:
                    log.exception("alarm_tick_failed")
                failed = True
            if loop.time() >= next_prune:
                next_prune = loop.time() + PRUNE_SECONDS
                try:
                    await self._outbox.prune(time.time() - self._config.store.retention)
                except StoreError as exc:
                    log.error("alarm_outbox_prune_failed", error=str(exc))
            await asyncio.sleep(TICK_SECONDS)

    async def stop(self) -> None:
        """Stop evaluating, let deliveries in flight finish briefly, close the outbox."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._dispatcher is not None:
            await self._dispatcher.stop()
        if self._session is not None:
            await self._session.close()
        await self._outbox.close()

    def routes(self) -> list[web.RouteDef]:
        """`/v1/alarms` and `/v1/alarms/retry`."""
        assert self._dispatcher is not None
        return AlarmsApi(self._outbox, self._dispatcher).routes()

    def metric_families(self) -> list[Family]:
        """Fired, suppressed, delivered, retried, dead, pending."""
        if self._engine is None or self._dispatcher is None:
            return []
        return families(self._engine, self._dispatcher)
