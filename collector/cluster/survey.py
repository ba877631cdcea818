"""What an operator sees of NATS (a NATS boundary, like kv.py): every stream's and KV
bucket's leader, replicas and size, the durable consumers' lag, and which configured
servers answer. nats-py exceptions become ClusterError here."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, StreamInfo

from collector.cluster.errors import ClusterError, describe

NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
TIMEOUT = 5.0
PROBE_TIMEOUT = 1.5


@dataclass(frozen=True)
class ConsumerView:
    """A durable consumer: messages it has not yet been sent, and sent but not acked."""

    name: str
    pending: int
    ack_pending: int

    @property
    def lag(self) -> int:
        """Messages the consumer has not acknowledged."""
        return self.pending + self.ack_pending


@dataclass(frozen=True)
class StreamView:
    """One stream (a KV bucket is the stream `KV_<bucket>`): its leader, the replicas by
    state (the leader counts as current), what it holds."""

    name: str
    replicas: int
    leader: str | None
    current: tuple[str, ...] = ()
    lagging: tuple[str, ...] = ()
    offline: tuple[str, ...] = ()
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    consumer_count: int = 0
    consumers: tuple[ConsumerView, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The view as JSON-ready data (consumers with their lag)."""
        data = asdict(self)
        data["consumers"] = [{**asdict(c), "lag": c.lag} for c in self.consumers]
        return data


def stream_view(info: StreamInfo) -> StreamView:
    """The parts of nats-py's StreamInfo the status shows (pure). A server outside any
    cluster reports no replicas: it leads its streams itself."""
    config, state, cluster = info.config, info.state, info.cluster
    leader = cluster.leader if cluster is not None else "(standalone)"
    peers = (cluster.replicas or []) if cluster is not None else []
    return StreamView(
        name=config.name or "?", replicas=int(config.num_replicas or 1), leader=leader,
        current=tuple(([leader] if leader else [])
                      + [p.name or "?" for p in peers if p.current and not p.offline]),
        lagging=tuple(p.name or "?" for p in peers if not p.current and not p.offline),
        offline=tuple(p.name or "?" for p in peers if p.offline),
        messages=int(state.messages), bytes=int(state.bytes),
        first_seq=int(state.first_seq), last_seq=int(state.last_seq),
        consumer_count=int(state.consumer_count))


def consumer_view(info: ConsumerInfo) -> ConsumerView:
    """A consumer's lag figures (pure)."""
    return ConsumerView(name=info.name, pending=int(info.num_pending or 0),
                        ack_pending=int(info.num_ack_pending or 0))


async def streams(js: JetStreamContext, within: float = TIMEOUT) -> list[StreamView]:
    """Every stream of the account, by name."""
    try:
        infos = await asyncio.wait_for(js.streams_info(), within)
    except NATS_ERRORS as exc:
        raise ClusterError(f"cannot list streams: {describe(exc)}") from None
    return sorted((stream_view(info) for info in infos), key=lambda view: view.name)


async def bucket_keys(js: JetStreamContext, bucket: str,
                      within: float = TIMEOUT) -> list[str]:
    """The keys a KV bucket holds a value or a deletion marker for, from its stream's
    subjects: one request to the stream leader, where a watch would create a consumer."""
    prefix = f"$KV.{bucket}."
    try:
        info = await asyncio.wait_for(js.stream_info(f"KV_{bucket}",
                                                     subjects_filter=prefix + ">"), within)
    except NATS_ERRORS as exc:
        raise ClusterError(f"cannot list the keys of {bucket}: "
                           f"{describe(exc)}") from None
    return sorted(subject[len(prefix):] for subject in (info.state.subjects or {}))


async def durable_consumers(js: JetStreamContext, stream: str,
                            within: float = TIMEOUT) -> list[ConsumerView]:
    """The stream's durable consumers (ephemeral ones, such as each node's ordered
    consumer and KV watchers, are left out)."""
    try:
        infos = await asyncio.wait_for(js.consumers_info(stream), within)
    except NATS_ERRORS as exc:
        raise ClusterError(f"cannot list consumers of {stream}: "
                           f"{describe(exc)}") from None
    return sorted((consumer_view(info) for info in infos
                   if info.config is not None and info.config.durable_name),
                  key=lambda view: view.name)


async def probe(url: str, within: float = PROBE_TIMEOUT) -> dict[str, Any]:
    """Whether a configured server answers: a NATS server sends its INFO line as soon as a
    client connects (before any TLS or credentials), naming itself and its version."""
    parts = urlsplit(url)
    found: dict[str, Any] = {"url": url, "answers": False}
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 4222),
            within)
    except (OSError, TimeoutError) as exc:
        return {**found, "error": describe(exc)}
    try:
        line = await asyncio.wait_for(reader.readline(), within)
    except (OSError, TimeoutError) as exc:
        return {**found, "error": f"no INFO: {describe(exc)}"}
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), within)
    if not line.startswith(b"INFO "):
        return {**found, "error": f"not a NATS server: {line[:40]!r}"}
    try:
        info = json.loads(line[5:])
    except ValueError:
        return {**found, "error": "unreadable INFO"}
    return {**found, "answers": True, "name": info.get("server_name"),
            "version": info.get("version"), "cluster": info.get("cluster"),
            "jetstream": bool(info.get("jetstream"))}
