"""The drain listeners as a server component: started after the alarms (so every line
is seen), reloaded with the config, with their figures on /metrics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import structlog
from aiohttp import web

from collector.config.drain import DrainConfig
from collector.config.model import Config
from collector.ingest import Ingest
from collector.listen.drain import DrainListener
from collector.listen.drain_records import FrameIds
from collector.metrics import Metric, counter, gauge
from collector.server.context import Context
from collector.server.reload import same_settings

log = structlog.get_logger("collector.listen.drain")


def _same_socket(a: DrainConfig, b: DrainConfig) -> bool:
    """Whether `b` can be served on `a`'s socket (only credentials and bounds differ)."""
    keep = replace(b, drains=a.drains, max_connections=a.max_connections,
                   dedup_frames=a.dedup_frames, source=a.source, location=a.location)
    return same_settings(a, keep)


class DrainComponent:
    """Every `format = logplex` listener of the config."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._ingest: Ingest | None = None
        self.listeners: dict[str, DrainListener] = {}

    async def start(self, context: Context) -> None:
        """Open each drain listener; all or none."""
        self._ingest = context.ingest
        try:
            for drain in self._config.drains:
                await self._open(drain)
        except BaseException:
            await self.stop()
            raise

    async def _open(self, drain: DrainConfig, frame_ids: FrameIds | None = None) -> None:
        assert self._ingest is not None
        listener = DrainListener(drain, self._ingest, frame_ids)
        await listener.start()
        self.listeners[drain.name] = listener

    async def stop(self) -> None:
        """Close every drain listener."""
        listeners, self.listeners = self.listeners, {}
        for listener in listeners.values():
            await listener.close()

    async def reload(self, config: Config) -> None:
        """New tokens and bounds on the same sockets; a drain that moved (address, TLS)
        is closed and opened again; removed ones close, new ones open."""
        wanted = {drain.name: drain for drain in config.drains}
        for name in [n for n in self.listeners if n not in wanted]:
            await self.listeners.pop(name).close()
        for name, drain in wanted.items():
            running = self.listeners.get(name)
            if running is not None and _same_socket(running.config, drain):
                running.retune(drain)
                continue
            frame_ids = None
            if running is not None:
                frame_ids = running.frame_ids
                await self.listeners.pop(name).close()
            await self._open(drain, frame_ids)
        self._config = config

    def routes(self) -> Sequence[web.RouteDef]:
        """None: drains listen on their own addresses."""
        return []

    def metric_families(self) -> Iterable[Metric]:
        """Requests by result, lines taken, connections, frame ids remembered."""
        if not self.listeners:
            return
        requests = counter("collector_drain_requests_total",
                           "Logplex POSTs to each drain listener, by result (ok, duplicate, "
                           "unauthorized, too_large, truncated, bad_length, "
                           "msg_count_mismatch, store_backlog, ...).", ["listener", "result"])
        lines = counter("collector_drain_lines_accepted_total",
                        "Lines (Logplex frames) taken from drains.", ["listener"])
        failed = counter("collector_drain_frames_failed_total",
                         "Frames dropped because no record could be made of them (a bug; "
                         "each is logged as drain_frame_failed).", ["listener"])
        connections = gauge("collector_drain_connections",
                            "Connections open (bound: max-connections).", ["listener"])
        refused = counter("collector_drain_connections_refused_total",
                          "Connections closed at once for max-connections.", ["listener"])
        frame_ids = gauge("collector_drain_frame_ids",
                          "Frame ids remembered to drop re-sent POSTs (bound: dedup-frames).",
                          ["listener"])
        for name, listener in sorted(self.listeners.items()):
            stats = listener.stats
            for result, count in sorted(stats.requests.items()):
                requests.add_metric([name, result], count)
            lines.add_metric([name], stats.lines)
            failed.add_metric([name], stats.frames_failed)
            connections.add_metric([name], stats.connections)
            refused.add_metric([name], stats.connections_refused)
            frame_ids.add_metric([name], len(listener.frame_ids))
        yield from (requests, lines, failed, connections, refused, frame_ids)
