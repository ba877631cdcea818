"""`GET /v1/cluster`: this node's view of the cluster, read fresh from NATS on each
request (nodes, servers, streams and consumers) with the verdict of
collector.cluster.status."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from collector.api.params import names_problem
from collector.cluster.connection import Connection
from collector.cluster.errors import ClusterError
from collector.cluster.heartbeat import Heartbeat
from collector.cluster.status import parse, status_document
from collector.cluster.survey import (
    ConsumerView,
    StreamView,
    durable_consumers,
    probe,
    streams,
)
from collector.config.model import ClusterConfig

CONSUMERS_WITHIN = 2.0


class ClusterStatus:
    """Gathers the status; what NATS does not answer becomes a reason, not an error."""

    def __init__(self, config: ClusterConfig, connection: Connection,
                 heartbeat: Heartbeat) -> None:
        self._config = config
        self._connection = connection
        self._heartbeat = heartbeat

    async def _nodes(self, errors: list[str]) -> tuple[list[dict[str, Any]], float]:
        """The heartbeats, and the time they were read (their ages count from it)."""
        try:
            items = await self._heartbeat.read_nodes()
        except ClusterError as exc:
            errors.append(f"cannot read the heartbeats: {exc}")
            # Shown as last read by the heartbeat loop, with their ages, rather than as
            # nodes gone missing.
            return list(self._heartbeat.documents), time.time()
        documents = [d for d in (parse(i) for i in items if not i.deleted) if d]
        return documents, time.time()

    async def _streams(self, errors: list[str]) -> list[StreamView]:
        """Every stream, with its durable consumers. Listing consumers waits for the
        servers that host them (about 4 s when one is dead), so that wait is bounded
        more tightly and its failure leaves the streams shown."""
        try:
            js = self._connection.jetstream()
            views = await streams(js)
        except ClusterError as exc:
            errors.append(str(exc))
            return []
        found: list[StreamView] = []
        for view in views:
            consumers: tuple[ConsumerView, ...] = ()
            if view.consumer_count:
                try:
                    consumers = tuple(await durable_consumers(js, view.name,
                                                              within=CONSUMERS_WITHIN))
                except ClusterError as exc:
                    errors.append(str(exc))
            found.append(replace(view, consumers=consumers))
        return found

    async def gather(self) -> dict[str, Any]:
        """The status document (collector.cluster.status.status_document); its three
        sources are asked at once."""
        errors: list[str] = []
        (documents, read_at), views, servers = await asyncio.gather(
            self._nodes(errors), self._streams(errors),
            asyncio.gather(*(probe(url) for url in self._config.nats)))
        present = [str(d.get("node")) for d in documents]
        return status_document(
            self._config.node, read_at, documents=documents,
            missing=self._heartbeat.roster.missing(present), streams=views,
            servers=list(servers), connected=_connected(self._connection.server_info()),
            errors=errors)

    async def handle(self, request: web.Request) -> web.Response:
        """GET /v1/cluster (no parameters)."""
        problem = names_problem(request.query, ())
        if problem:
            return web.json_response({"error": problem}, status=400)
        return web.json_response(await self.gather(), dumps=_dumps)


def _connected(info: dict[str, Any]) -> dict[str, Any]:
    """The connected server's identity, without the nonce and the like."""
    keys = ("url", "server_name", "version", "cluster", "connect_urls", "jetstream")
    return {key: info[key] for key in keys if key in info}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
