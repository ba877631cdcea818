"""The NATS boundary: connect, set up the stream, publish, subscribe; every nats-py
exception becomes a ClusterError here."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from datetime import datetime
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

from collector.cluster.errors import ClusterError, OutOfSequence, describe
from collector.cluster.kv import Bucket, open_bucket
from collector.cluster.reader import Reader
from collector.cluster.stream import STREAM, SUBJECTS
from collector.config.model import ClusterConfig
from collector.errors import ConfigError, Location

log = structlog.get_logger("collector.cluster")

NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
# JetStream's error code for a failed Nats-Expected-Last-Subject-Sequence check.
WRONG_LAST_SEQUENCE = 10071


def _trailing_int(text: str | None) -> int:
    """The number a JetStream error description ends with ("wrong last sequence: 42")."""
    tail = (text or "").rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else -1


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

    def options(self) -> dict[str, Any]:
        """The connect options the settings ask for; ConfigError (naming the key) when a
        creds or TLS file cannot be read, so bad settings fail at start, not in a loop."""
        config = self._config
        options: dict[str, Any] = {}
        if config.creds is not None:
            if not os.access(config.creds, os.R_OK):
                raise self._setting_error("creds", config.creds, "no readable file there")
            options["user_credentials"] = str(config.creds)
        if config.tls_ca or config.tls_cert:
            key, path = "tls-ca", config.tls_ca
            try:
                context = ssl.create_default_context(
                    cafile=str(config.tls_ca) if config.tls_ca else None)
                if config.tls_cert:
                    key, path = "tls-cert", config.tls_cert
                    context.load_cert_chain(str(config.tls_cert),
                                            str(config.tls_key) if config.tls_key else None)
            except (OSError, ssl.SSLError) as exc:
                problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise self._setting_error(key, path, str(problem)) from None
            options["tls"] = context
        return options

    def _setting_error(self, key: str, path: Path | None, problem: str) -> ConfigError:
        where = self._config.location
        location = Location(where.file, where.line, key) if where else None
        return ConfigError(f"cannot use {path} ([cluster] {key}): {problem}", location)

    async def open(self, within: float = 10.0) -> None:
        """Connect, once, within `within` seconds (reconnecting without end afterwards);
        ClusterError if no server answers (nats-py does not retry a first connect), a
        no-op when already open."""
        if self._nc is not None:
            return
        config = self._config
        options = self.options()
        # nats-py types it as int, but takes (and means) seconds as a float.
        options["reconnect_time_wait"] = 0.5
        client = Client()
        try:
            await asyncio.wait_for(client.connect(
                list(config.nats), name=config.node, connect_timeout=2,
                max_reconnect_attempts=-1, allow_reconnect=True,
                error_cb=self._on_error, disconnected_cb=self._on_disconnect,
                reconnected_cb=self._on_reconnect, **options), within)
        except (*NATS_ERRORS, ssl.SSLError) as exc:
            with contextlib.suppress(*NATS_ERRORS):
                await asyncio.wait_for(client.close(), 2.0)
            reason = (f"no server answered within {within:g} s"
                      if isinstance(exc, asyncio.TimeoutError)
                      else describe(exc))
            raise ClusterError(f"cannot connect to NATS at {', '.join(config.nats)}: "
                               f"{reason}") from None
        self._nc = client
        self._js = client.jetstream()

    async def _on_error(self, exc: Exception) -> None:
        # Before the first connection every refused try lands here; the bring-up loop
        # says once per attempt that NATS is not up, so these are only for debugging.
        level = log.warning if self._nc is not None else log.debug
        level("nats_error", error=describe(exc))

    async def _on_disconnect(self) -> None:
        log.warning("nats_disconnected")

    async def _on_reconnect(self) -> None:
        log.info("nats_reconnected")

    def jetstream(self) -> JetStreamContext:
        """The JetStream context, for the other NATS boundaries (kv, survey); ClusterError
        before `open`."""
        return self._jetstream()

    def server_info(self) -> dict[str, Any]:
        """The connected server's URL and its INFO (name, version, cluster, the peers'
        client URLs); empty when not connected."""
        nc = self._nc
        if nc is None or not nc.is_connected or nc.connected_url is None:
            return {}
        # nats-py keeps the server's INFO only in this attribute.
        return {"url": nc.connected_url.geturl(), **nc._server_info}

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
                                       f"{describe(exc)}") from None
                await asyncio.sleep(0.5)

    async def bucket(self, name: str, *, ttl: float | None = None,
                     history: int = 1) -> Bucket:
        """The KV bucket `name` with the cluster's replicas, created when absent."""
        return await open_bucket(self._jetstream(), name, self._config.replicas, ttl=ttl,
                                 history=history)

    async def publish(self, subject: str, body: bytes, msg_id: str, wait: float,
                      expected_last: int | None = None) -> int:
        """Publish one batch and wait (at most `wait` seconds) for JetStream's ack from a
        quorum; the stream sequence, or ClusterError. With `expected_last`, JetStream
        stores it only if `subject`'s last message is at that sequence (OutOfSequence
        otherwise); a repeat of a stored message id is acknowledged as before."""
        headers = {"Nats-Msg-Id": msg_id}
        if expected_last is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last)
        try:
            ack = await self._jetstream().publish(subject, body, timeout=wait,
                                                  stream=STREAM, headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise OutOfSequence(f"publish refused: {exc.description}",
                                    _trailing_int(exc.description)) from None
            raise ClusterError(f"publish not acknowledged: {exc}") from None
        except NATS_ERRORS as exc:
            raise ClusterError(f"publish not acknowledged: {describe(exc)}"
                               ) from None
        return int(ack.seq)

    async def last_on_subject(self, subject: str, wait: float = 2.0) -> tuple[int, str]:
        """The stream sequence and `Nats-Msg-Id` of `subject`'s last message ((0, "")
        if it has none), or ClusterError."""
        return await self._get(wait, subject=subject)

    async def msg_id_at(self, seq: int, wait: float = 2.0) -> str:
        """The `Nats-Msg-Id` of the message at stream sequence `seq` ("" if none)."""
        return (await self._get(wait, seq=seq))[1]

    async def _get(self, wait: float, **where: Any) -> tuple[int, str]:
        try:
            msg = await asyncio.wait_for(self._jetstream().get_msg(STREAM, **where), wait)
        except nats.js.errors.NotFoundError:
            return 0, ""
        except NATS_ERRORS as exc:
            raise ClusterError(f"cannot read {STREAM} message {where}: "
                               f"{describe(exc)}") from None
        return int(msg.seq or 0), str((msg.headers or {}).get("Nats-Msg-Id", ""))

    async def last_seq(self) -> int:
        """The stream's last sequence, or ClusterError."""
        try:
            info = await self._jetstream().stream_info(STREAM)
        except NATS_ERRORS as exc:
            raise ClusterError(f"no stream info: {describe(exc)}") from None
        return int(info.state.last_seq)

    async def identity(self) -> tuple[str, int]:
        """The stream's creation time (ISO 8601; "" if the server gives none), which tells
        a LOGS deleted and made again from the one before it, and its last sequence; or
        ClusterError."""
        try:
            info = await self._jetstream().stream_info(STREAM)
        except NATS_ERRORS as exc:
            raise ClusterError(f"no stream info: {describe(exc)}") from None
        created = info.created.isoformat() if info.created is not None else ""
        return created, int(info.state.last_seq)

    async def first_seq(self) -> int:
        """The stream's first sequence still stored (past 1 once retention cut it), or
        ClusterError."""
        try:
            info = await self._jetstream().stream_info(STREAM)
        except NATS_ERRORS as exc:
            raise ClusterError(f"no stream info: {describe(exc)}") from None
        return int(info.state.first_seq)

    async def ordered(self, after: int) -> Reader:
        """An ordered consumer of the whole stream from the sequence after `after`."""
        if after > 0:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=after + 1)
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        try:
            return Reader(await self._jetstream().subscribe(
                SUBJECTS, stream=STREAM, ordered_consumer=True, config=config))
        except NATS_ERRORS as exc:
            raise ClusterError(f"cannot read stream {STREAM}: {describe(exc)}"
                               ) from None

    async def ordered_since(self, start: datetime) -> Reader:
        """An ordered consumer of the whole stream from the first message stored at or
        after `start` (the alarms leader's warm-up replay)."""
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                opt_start_time=start)
        try:
            return Reader(await self._jetstream().subscribe(
                SUBJECTS, stream=STREAM, ordered_consumer=True, config=config))
        except NATS_ERRORS as exc:
            raise ClusterError(f"cannot read stream {STREAM}: {describe(exc)}"
                               ) from None

    async def close(self) -> None:
        """Drain nothing, just close (unacked batches are in the spool by then)."""
        if self._nc is not None:
            with contextlib.suppress(*NATS_ERRORS):
                await asyncio.wait_for(self._nc.close(), 5.0)
            self._nc = None
            self._js = None
