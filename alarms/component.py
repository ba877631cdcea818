"""The alarms as a part of the running collector: engine, outbox, dispatcher, API, figures.

The engine is an ingest consumer: it sees every record as it is accepted, on the event
loop, and only queues what fires. Everything slow (the outbox's disk, the notifiers'
network) happens in the dispatcher's tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import aiohttp
import structlog
from aiohttp import web

from alarms.api import AlarmsApi
from alarms.delivery import Dispatcher
from alarms.engine import AlarmEngine
from alarms.grouping import timings
from alarms.metrics import families
from alarms.notification import Notification
from alarms.notifiers.base import Notifier, Services, api_url
from alarms.notifiers.registry import build_all
from alarms.outbox.sqlite import SqliteOutbox
from alarms.silence_api import SilencesApi
from alarms.silence_store import JsonSilenceFile, SilenceRegistry
from alarms.spec import AppRules
from alarms.ticker import tick_forever
from collector.config.model import Config
from collector.metrics import Metric
from collector.server.context import Context
from collector.server.reload import same_settings

log = structlog.get_logger("alarms")

OUTBOX_FILE = "alarms.db"
SILENCES_FILE = "silences.json"


class AlarmsComponent:
    """See the module docstring."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._rules: list[AppRules] = list(config.apps)
        self._services: Services | None = None
        self._outbox = SqliteOutbox(config.store.data_dir / OUTBOX_FILE)
        self._silences = SilenceRegistry(
            JsonSilenceFile(config.store.data_dir / SILENCES_FILE))
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: Dispatcher | None = None
        self._engine: AlarmEngine | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self, context: Context) -> None:
        """Open the outbox, resume what it holds, and start seeing records."""
        await self._silences.open()
        pending = await self._outbox.open()
        self._session = aiohttp.ClientSession()
        self._services = Services(publish=context.ingest.publish,
                                  next_ids=context.ingest.next_ids,
                                  api_url=api_url(self._config.http.host,
                                                  self._config.http.port))
        notifiers = self._notifiers(self._rules)
        self._dispatcher = Dispatcher(self._outbox, notifiers,
                                      {rules.app: rules.retry for rules in self._rules},
                                      silencer=self._silence_of,
                                      grouping=timings(self._rules))
        self._engine = AlarmEngine(self._rules, self._dispatcher.submit)
        # Before the first record: alerts firing when the collector stopped are resolved
        # and repeated as if it had not.
        restored = self._engine.restore(
            await self._outbox.latest_alerts(self._engine.bounds.alerts))
        self._dispatcher.start(pending)
        context.ingest.add_consumer(self._engine)
        self._ticker = asyncio.create_task(self._tick(), name="alarm-ticker")
        log.info("alarms_started", apps=len(self._rules), alarms=len(notifiers),
                 pending=len(pending), restored=restored)

    def _silence_of(self, notification: Notification, now: float) -> str | None:
        silence = self._silences.match(notification, now)
        return silence.id if silence is not None else None

    def _notifiers(self, rules: list[AppRules]) -> dict[tuple[str, str], Notifier]:
        assert self._services is not None
        assert self._session is not None
        return build_all(rules, self._services, self._session)

    async def reload(self, config: Config) -> None:
        """New rules and notifiers for the next record; the outbox and what it holds stay."""
        rules = list(config.apps)
        self._config = config
        if self._engine is None or self._dispatcher is None or same_settings(
                rules, self._rules):
            return
        notifiers = self._notifiers(rules)
        self._dispatcher.reconfigure(notifiers, {app.app: app.retry for app in rules},
                                     timings(rules))
        self._engine.replace_rules(rules, same_settings)
        self._rules = rules
        log.info("alarms_reloaded", apps=len(rules), alarms=len(notifiers))

    async def _tick(self) -> None:
        engine, dispatcher = self._engine, self._dispatcher
        assert engine is not None
        assert dispatcher is not None

        async def step() -> None:
            engine.tick()
            await dispatcher.trim_dead_letters()

        await tick_forever(step, lambda: self._outbox.prune(
            time.time() - self._config.store.retention))

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
        """`/v1/alarms`, `/v1/alarms/retry` and `/v1/silences`."""
        assert self._dispatcher is not None
        return [*AlarmsApi(self._outbox, self._dispatcher).routes(),
                *SilencesApi(self._silences).routes()]

    def metric_families(self) -> Iterable[Metric]:
        """Fired, suppressed, delivered, retried, dead, pending."""
        if self._engine is None or self._dispatcher is None:
            return []
        return families(self._engine, self._dispatcher)
