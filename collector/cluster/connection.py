"""The NATS boundary: connect, set up the stream, publish, subscribe; every nats-py
exception becomes a ClusterError here."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from datetime import datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from collector.cluster.errors import ClusterError
from collector.cluster.kv import Bucket, open_bucket
from collector.cluster.stream import STREAM, SUBJECTS
from collector.config.model import ClusterConfig

log = structlog.get_logger("collector.cluster")

NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)


class Connection:
    """One node's connection to NATS and its JetStream context."""

    def __init__(self, config: ClusterConfig) -> None:
        self._config = config
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def connected(self) -> bool:
        """Whether the client holds a connection to a server right now."""
        return self._nc is not None and self._nc.is_connected

    async def open(self) -> None:
        """Connect (reconnecting without end afterwards); ClusterError if no server answers."""
        config = self._config
        options: dict[str, Any] = {}
        if config.creds is not None:
            options["user_credentials"] = str(config.creds)
        if config.tls_ca or config.tls_cert:
            context = ssl.create_default_context(
                cafile=str(config.tls_ca) if config.tls_ca else None)
            if config.tls_cert:
                context.load_cert_chain(str(config.tls_cert),
                                        str(config.tls_key) if config.tls_key else None)
            options["tls"] = context
        try:
            self._nc = await nats.connect(
                list(config.nats), name=config.node, connect_timeout=2,
                reconnect_time_wait=0.5, max_reconnect_attempts=-1, allow_reconnect=True,
                error_cb=self._on_error, disconnected_cb=self._on_disconnect,
                reconnected_cb=self._on_reconnect, **options)
        except (*NATS_ERRORS, ssl.SSLError) as exc:
            raise ClusterError(f"cannot connect to NATS at {', '.join(config.nats)}: "
                               f"{exc or type(exc).__name__}") from None
        self._js = self._nc.jetstream()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats_error", error=str(exc) or type(exc).__name__)

    async def _on_disconnect(self) -> None:
        log.warning("nats_disconnected")

    async def _on_reconnect(self) -> None:
        log.info("nats_reconnected")

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise ClusterError("not connected to NATS")
        return self._js

    async def ensure_stream(self, config: StreamConfig, within: float = 30.0) -> None:
        """Create the stream or bring its settings up to `config`, retrying while the
        cluster elects its meta leader (a fresh NATS cluster takes a moment)."""
        js = self._jetstream()
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                try:
                    await js.stream_info(STREAM)
                except nats.js.errors.NotFoundError:
                    await js.add_stream(config)
                else:
                    await js.update_stream(config)
                return
            except NATS_ERRORS as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise ClusterError(f"cannot set up stream {STREAM}: "
                                       f"{exc or type(exc).__name__}") from None
                await asyncio.sleep(0.5)

    async def bucket(self, name: str, *, ttl: float | None = None,
                     history: int = 1) -> Bucket:
        """The KV bucket `name` with the cluster's replicas, created when absent."""
        return await open_bucket(self._jetstream(), name, self._config.replicas, ttl=ttl,
                                 history=history)

    async def publish(self, subject: str, body: bytes, msg_id: str, wait: float) -> int:
        """Publish one batch and wait (at most `wait` seconds) for JetStream's ack from a
        quorum; the stream sequence, or ClusterError."""
        try:
            ack = await self._jetstream().publish(subject, body, timeout=wait,
                                                  stream=STREAM,
                                                  headers={"Nats-Msg-Id": msg_id})
        except NATS_ERRORS as exc:
            raise ClusterError(f"publish not acknowledged: {exc or type(exc).__name__}"
                               ) from None
        return int(ack.seq)

    async def last_seq(self) -> int:
        """The stream's last sequence, or ClusterError."""
        try:
            info = await self._jetstream().stream_info(STREAM)
        except NATS_ERRORS as exc:
            raise ClusterError(f"no stream info: {exc or type(exc).__name__}") from None
        return int(info.state.last_seq)

    async def ordered(self, after: int) -> Subscription:
        """An ordered consumer of the whole stream from the sequence after `after`."""
        if after > 0:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=after + 1)
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        try:
            return await self._jetstream().subscribe(SUBJECTS, stream=STREAM,
                                                     ordered_consumer=True, config=config)
        except NATS_ERRORS as exc:
            raise ClusterError(f"cannot read stream {STREAM}: {exc or type(exc).__name__}"
                               ) from None

    async def ordered_since(self, start: datetime) -> Subscription:
        """An ordered consumer of the whole stream from the first message stored at or
        after `start` (the alarms leader's warm-up replay)."""
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                opt_start_time=start)
        try:
            return await self._jetstream().subscribe(SUBJECTS, stream=STREAM,
                                                     ordered_consumer=True, config=config)
        except NATS_ERRORS as exc:
            raise ClusterError(f"cannot read stream {STREAM}: {exc or type(exc).__name__}"
                               ) from None

    async def close(self) -> None:
        """Drain nothing, just close (unacked batches are in the spool by then)."""
        if self._nc is not None:
            with contextlib.suppress(*NATS_ERRORS):
                await asyncio.wait_for(self._nc.close(), 5.0)
            self._nc = None
            self._js = None
