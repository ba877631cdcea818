"""Wiring and lifecycle: store, ingest, fan-out, listeners, components, HTTP API."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence

import structlog
from aiohttp import web

from collector.api.app import create_app
from collector.config.model import Config
from collector.context import Component, Context
from collector.errors import ConfigError
from collector.fanout import Hub
from collector.ingest import Ids, Ingest
from collector.listen.decoders import make_decoder
from collector.listen.udp import start_listener
from collector.store.sqlite import SqliteStore

log = structlog.get_logger("collector.server")

ComponentFactory = Callable[[Config], Component | None]
# Components are registered by the packages that provide them (alarms), so the core does
# not import them and a deployment without alarm rules pays nothing for them.
_component_factories: list[ComponentFactory] = []


def register_component(factory: ComponentFactory) -> None:
    """Build a component from the config whenever a server starts."""
    if factory not in _component_factories:
        _component_factories.append(factory)


class Server:
    """One collector process."""

    def __init__(self, config: Config, components: Sequence[Component] | None = None) -> None:
        self.config = config
        self._extra = components
        self.context: Context | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> Context:
        """Open the store, start listeners, components and the API."""
        config = self.config
        store = SqliteStore(config.store.data_dir, partition_seconds=config.store.partition,
                            retention_seconds=config.store.retention,
                            retention_bytes=config.store.retention_size,
                            max_queue=config.store.max_queue, batch_max=config.store.batch_max,
                            log_level=config.log_level, log_format=config.log_format)
        last = await store.open()
        hub = Hub()
        ingest = Ingest(Ids(last), store, [hub])
        context = Context(config=config, store=store, hub=hub, ingest=ingest)
        self.context = context
        try:
            components = list(self._extra) if self._extra is not None else [
                c for f in _component_factories if (c := f(config)) is not None]
            for component in components:
                await component.start(context)
                context.components.append(component)
            for listener_config in config.listeners:
                context.listeners.append(
                    await start_listener(listener_config, make_decoder(listener_config),
                                         ingest))
            self._runner = web.AppRunner(create_app(context), handle_signals=False,
                                         access_log=None, shutdown_timeout=5.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, config.http.host, config.http.port,
                               reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise ConfigError(f"cannot serve http on {config.http.host}:"
                                  f"{config.http.port}: {exc.strerror}") from None
        except BaseException:
            await self.stop()
            raise
        log.info("collector_started", http=f"{config.http.host}:{config.http.port}",
                 data_dir=str(config.store.data_dir), last_id=last,
                 auth="bearer" if config.http.token else "none (loopback only)")
        return context

    async def stop(self) -> None:
        """Stop receiving, end streams, let components finish, commit the last batch."""
        context = self.context
        if context is None:
            return
        self.context = None
        context.closing.set()
        for listener in context.listeners:
            if listener.transport is not None:
                listener.transport.close()
        context.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for component in reversed(context.components):
            try:
                await component.stop()
            except Exception:
                log.exception("component_stop_failed", component=type(component).__name__)
        await context.store.close()
        stats = context.store.stats()
        log.info("collector_stopped", committed=stats.committed, dropped=stats.dropped)


async def serve(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = Server(config)
    await server.start()
    try:
        await stop.wait()
        log.info("shutdown_requested")
    finally:
        await server.stop()
