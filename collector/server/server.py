"""Lifecycle: store, ingest, fan-out, components, listeners, HTTP API; reload on SIGHUP."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import FrameType

import structlog
from aiohttp import web

from collector.api.app import create_app
from collector.config.model import Config, ListenerConfig
from collector.errors import CollectorError, ConfigError
from collector.fanout import Hub
from collector.ingest import Ids, Ingest
from collector.listen.decoders import make_decoder
from collector.listen.receivers import Listener, ReceiverGroup, start_receivers
from collector.listen.streams import start_stream
from collector.listen.udp import start_listener
from collector.server.components import build_cluster, build_components
from collector.server.context import Component, Context
from collector.server.reload import ReloadPlan, plan_reload
from collector.store.sqlite import SqliteStore

log = structlog.get_logger("collector.server")

Loader = Callable[[], Config]


class Server:
    """One collector process: built from a Config, reloaded from `load()` on request."""

    def __init__(self, config: Config, load: Loader | None = None,
                 components: Sequence[Component] | None = None) -> None:
        self.config = config
        self._load = load if load is not None else (lambda: config)
        self._components = components
        self.context: Context | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> Context:
        """Open the store, then start the components, the listeners and the API, in order."""
        config = self.config
        store = SqliteStore(config.store.data_dir, partition_seconds=config.store.partition,
                            retention_seconds=config.store.retention,
                            retention_bytes=config.store.retention_size,
                            max_queue=config.store.max_queue, batch_max=config.store.batch_max,
                            log_level=config.log_level, log_format=config.log_format)
        last = await store.open()
        hub = Hub()
        cluster = build_cluster(config, store)
        # In cluster mode ingest publishes, and the materializer feeds the store and the
        # fan-out with every node's records in stream order.
        ingest = (Ingest(Ids(last), store, [hub]) if cluster is None
                  else Ingest(Ids(last), cluster.sink, []))
        context = Context(config=config, store=store, hub=hub, ingest=ingest)
        self.context = context
        try:
            components: list[Component] = [] if cluster is None else [cluster]
            components += (list(self._components) if self._components is not None
                           else build_components(config, cluster))
            for component in components:
                await component.start(context)
                context.components.append(component)
            for listener_config in config.listeners:
                context.listeners.append(await self._open(listener_config, ingest))
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

    async def _open(self, config: ListenerConfig, ingest: Ingest) -> Listener:
        if config.transport != "udp":
            return await start_stream(config, ingest)
        if config.receivers > 1:
            make_decoder(config)  # the settings' errors surface here, not in a child
            return await start_receivers(config, ingest, self.config.log_level,
                                         self.config.log_format)
        return await start_listener(config, make_decoder(config), ingest)

    async def reload(self) -> bool:
        """Re-read the config and apply what changed; keep the running one if it is bad.

        The one catch point of a reload: whatever goes wrong is logged as `reload_failed`,
        counted, and the server goes on with what it runs.
        """
        context = self.context
        if context is None:
            return False
        started = time.monotonic()
        try:
            new = self._load()
            plan = plan_reload(context.config, new)
            if plan.needs_restart:
                log.warning("reload_needs_restart", keys=list(plan.needs_restart),
                            note="kept the running values; restart to apply these")
            await self._apply(context, plan)
        except CollectorError as exc:
            context.reloads["failed"] += 1
            log.error("reload_failed", error=str(exc), note="the running config is kept")
            return False
        except Exception:
            context.reloads["failed"] += 1
            log.exception("reload_failed", note="the running config is kept")
            return False
        context.reloads["ok"] += 1
        self.config = context.config
        log.info("config_reloaded", source=plan.config.source,
                 seconds=round(time.monotonic() - started, 4), **plan.summary())
        return True

    async def _apply(self, context: Context, plan: ReloadPlan) -> None:
        """Open new sockets (all or none) and reload the components; then retune the
        listeners whose settings changed on their socket, close the ones that go, and open
        those that take over a closed address.

        Until the first step succeeds (decoders built, sockets bound, components reloaded)
        nothing has changed, so a port that cannot be bound refuses the whole reload.
        """
        opened: list[Listener] = []
        try:
            decoders = {c.name: make_decoder(c) for c in plan.retune}
            for listener_config in plan.open_first:
                opened.append(await self._open(listener_config, context.ingest))
            # Before any socket closes: a component that refuses the new config (the
            # alarms build their notifiers here) leaves everything as it was.
            for component in context.components:
                await component.reload(plan.config)
        except BaseException:
            for listener in opened:
                await _close(listener)
            raise
        running = {listener.config.name: listener for listener in context.listeners}
        for listener_config in plan.retune:
            running[listener_config.name].reconfigure(listener_config,
                                                      decoders[listener_config.name])
        closing = {name: running.pop(name) for name in plan.close}
        for listener in closing.values():
            await _close(listener)
        running.update({listener.config.name: listener for listener in opened})
        failed: list[str] = []
        for listener_config in plan.open_after:
            try:
                running[listener_config.name] = await self._open(listener_config,
                                                                 context.ingest)
            except ConfigError as exc:
                failed.append(str(exc))
        context.listeners[:] = [running[c.name] for c in plan.config.listeners
                                if c.name in running]
        # A listener that could not open is left out of the running config, so that the
        # next reload sees it as new and tries again.
        context.config = replace(plan.config, listeners=tuple(
            c for c in plan.config.listeners if c.name in running))
        if failed:
            raise ConfigError("; ".join(failed))

    async def stop(self) -> None:
        """Stop receiving, end streams, let components finish, commit the last batch."""
        context = self.context
        if context is None:
            return
        self.context = None
        context.closing.set()
        # Receiver processes hand over their last batches here, before the store closes.
        for listener in context.listeners:
            await _close(listener)
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


async def _close(listener: Listener) -> None:
    if isinstance(listener, ReceiverGroup):
        await listener.close()  # logs listener_stopped itself
    elif listener.close():
        log.info("listener_stopped", listener=listener.config.name)


class HangupLatch:
    """Remembers a SIGHUP that arrives before the event loop handles them.

    Installed at the CLI edge before the config is read: SIGHUP's default action would
    kill the process, and a reload asked for during start-up must run once it is up.
    """

    def __init__(self) -> None:
        self._caught = False

    @classmethod
    def install(cls) -> HangupLatch:
        """Catch SIGHUP from now on (until the event loop takes the signal over)."""
        latch = cls()
        signal.signal(signal.SIGHUP, latch._catch)
        return latch

    def _catch(self, signum: int, frame: FrameType | None) -> None:
        self._caught = True

    def take(self) -> bool:
        """Whether a SIGHUP came; clears it."""
        caught, self._caught = self._caught, False
        return caught


async def serve(config: Config, load: Loader | None = None,
                latch: HangupLatch | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly; reload on each SIGHUP.

    A SIGHUP during start-up or during a reload is kept and served after it; several that
    come together make one more reload (each re-reads the file as it is then).
    """
    stop = asyncio.Event()
    hangup = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, hangup.set)
    if latch is not None and latch.take():
        hangup.set()
    server = Server(config, load)
    await server.start()
    try:
        while not stop.is_set():
            await _first(stop, hangup)
            if hangup.is_set() and not stop.is_set():
                hangup.clear()
                log.info("reload_requested")
                await server.reload()
        log.info("shutdown_requested")
    finally:
        await server.stop()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
