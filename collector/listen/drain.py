"""Heroku HTTPS log drains: Logplex POSTs `application/logplex-1` bodies here.

One aiohttp server per `[listener:NAME]` with `format = logplex`. A POST is answered
within the time it takes to read and parse it: its lines are handed to ingest (the store's
queue), not waited for on disk; a cluster node waits for the batch to be settled. No 2xx is
sent for lines not taken: a full store queue answers 503, and Logplex sends again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ssl
from collections import Counter
from typing import Any

import structlog
from aiohttp import web

from collector.config.drain import DRAIN_PATH, DrainConfig, DrainCredential
from collector.decode.logplex import BodyError, parse_body
from collector.errors import ConfigError
from collector.ingest import Ingest, Origin
from collector.listen.drain_records import FORMAT, FrameIds, frames_to_lines

log = structlog.get_logger("collector.listen.drain")

# Seconds a client has to send its body, and a cluster node waits for its lines to settle.
BODY_TIMEOUT = 30.0
SETTLE_TIMEOUT = 10.0
TLS_HANDSHAKE_TIMEOUT = 10.0
_CHUNK = 65536


class DrainStats:
    """Requests by result (`ok`, `duplicate`, `unauthorized`, `too_large`, ...), frames
    and lines taken, connections open and refused."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.lines = 0
        self.frames_failed = 0  # frames ingest could not make a record of (a bug)
        self.connections = 0
        self.connections_refused = 0


class _Counted(asyncio.Protocol):
    """Stands in front of aiohttp's protocol to bound the connections a listener holds.

    Counted once the connection is made (after its TLS handshake): a connection past the
    bound is closed at once and counted as refused.
    """

    def __init__(self, listener: DrainListener) -> None:
        self._listener = listener
        self._inner: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        listener = self._listener
        stats = listener.stats
        if stats.connections >= listener.config.max_connections:
            stats.connections_refused += 1
            listener.note_once("connections_refused", None)
            transport.close()
            return
        stats.connections += 1
        assert listener.server is not None
        self._inner = listener.server()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._listener.stats.connections -= 1
            inner, self._inner = self._inner, None
            inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def check_credentials(drains: tuple[DrainCredential, ...], header: str | None
                      ) -> DrainCredential | None:
    """The drain whose `APP:TOKEN` the Basic `Authorization` header holds, or None.

    Every drain is compared, in constant time, whatever matched: the time taken tells
    neither which app nor how much of a token was right.
    """
    if not header or not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    app, sep, token = decoded.partition(b":")
    if not sep:
        return None
    found: DrainCredential | None = None
    for drain in drains:
        same_app = hmac.compare_digest(app, drain.app.encode())
        same_token = hmac.compare_digest(token, drain.token.encode())
        if same_app and same_token:
            found = drain
    return found


class DrainListener:
    """One drain address: authenticates, de-duplicates, parses and hands lines on."""

    def __init__(self, config: DrainConfig, ingest: Ingest,
                 frame_ids: FrameIds | None = None) -> None:
        self.config = config
        self.stats = DrainStats()
        # Carried over when a reload reopens the listener elsewhere: a re-sent POST is
        # still known.
        self.frame_ids = frame_ids if frame_ids is not None else FrameIds(config.dedup_frames)
        self.frame_ids.capacity = config.dedup_frames
        # POSTs being taken now, by (app, frame id): a re-send that arrives meanwhile (a
        # cluster node waits for its batch to settle) gets the first one's answer.
        self._taking: dict[tuple[str, str], asyncio.Future[bool]] = {}
        self._ingest = ingest
        self._logged: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._asyncio_server: asyncio.AbstractServer | None = None
        self.server: web.Server | None = None

    def retune(self, config: DrainConfig) -> None:
        """Take new credentials and bounds on the same socket (a rotated token)."""
        self.config = config
        self.frame_ids.capacity = config.dedup_frames

    async def start(self) -> None:
        """Bind and serve; a ConfigError names the listener when it cannot."""
        config = self.config
        context = _tls_context(config) if config.tls else None
        app = web.Application(client_max_size=config.max_body)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=2.0)
        await runner.setup()
        self._runner = runner
        self.server = runner.server
        loop = asyncio.get_running_loop()
        try:
            self._asyncio_server = await loop.create_server(
                lambda: _Counted(self), config.host, config.port, ssl=context,
                reuse_address=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
                if context is not None else None)
        except OSError as exc:
            await runner.cleanup()
            self._runner = None
            raise ConfigError(f"cannot serve the drain on {config.host}:{config.port}: "
                              f"{exc.strerror}", config.location) from None
        log.info("drain_started", listener=config.name,
                 address=f"{'https' if context else 'http'}://{config.host}:{config.port}"
                         f"{DRAIN_PATH}", apps=[d.app for d in config.drains])

    async def close(self) -> None:
        """Stop accepting, finish requests under way (briefly), close."""
        server, self._asyncio_server = self._asyncio_server, None
        if server is not None:
            server.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        log.info("drain_stopped", listener=self.config.name)

    def note_once(self, reason: str, peer: str | None) -> None:
        """Log the first refusal of each reason; the others are only counted."""
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("drain_request_refused", listener=self.config.name, reason=reason,
                        peer=peer, note="further refusals for this reason are only counted")

    def _refuse(self, request: web.BaseRequest, status: int, reason: str,
                **headers: str) -> web.Response:
        self.stats.requests[reason] += 1
        self.note_once(reason, request.remote)
        return web.Response(status=status, text=reason + "\n", headers=headers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One Logplex POST: 204 once its lines are taken (or were, under its frame id);
        401, 400, 413, 408 or 503 otherwise, each counted by reason."""
        config = self.config
        if request.path != DRAIN_PATH:
            return self._refuse(request, 404, "not_found")
        if request.method != "POST":
            return self._refuse(request, 405, "method_not_allowed", Allow="POST")
        drain = check_credentials(config.drains, request.headers.get("Authorization"))
        if drain is None:
            return self._refuse(request, 401, "unauthorized",
                                **{"WWW-Authenticate": 'Basic realm="drain"'})
        length = request.content_length
        if length is not None and length > config.max_body:
            return self._refuse(request, 413, "too_large", Connection="close")
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                body = await _read_body(request, config.max_body)
        except TimeoutError:
            return self._refuse(request, 408, "body_timeout", Connection="close")
        if body is None:
            return self._refuse(request, 413, "too_large", Connection="close")
        frame_id = request.headers.get("Logplex-Frame-Id", "")
        key = (drain.app, frame_id)
        if frame_id and key in self.frame_ids:
            self.stats.requests["duplicate"] += 1
            return web.Response(status=204)
        pending = self._taking.get(key) if frame_id else None
        if pending is not None:
            if await asyncio.shield(pending):
                self.stats.requests["duplicate"] += 1
                return web.Response(status=204)
            return self._refuse(request, 503, "store_backlog", **{"Retry-After": "1"})
        frames = parse_body(body)
        if isinstance(frames, BodyError):
            self.stats.requests[frames.reason] += 1
            self.note_once(frames.reason, request.remote)
            return web.Response(status=400, text=f"{frames.reason}: {frames.detail}\n")
        count = request.headers.get("Logplex-Msg-Count")
        if count is not None and (not count.isdigit() or int(count) != len(frames)):
            return self._refuse(request, 400, "msg_count_mismatch")
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if frame_id:
            self._taking[key] = outcome
        taken = False
        try:
            taken = await self._take(frames, drain.app, request.remote or "")
        finally:
            if frame_id:
                if taken:
                    self.frame_ids.add(key)
                self._taking.pop(key, None)
            outcome.set_result(taken)
        if not taken:
            return self._refuse(request, 503, "store_backlog", **{"Retry-After": "1"})
        self.stats.requests["ok"] += 1
        return web.Response(status=204)

    async def _take(self, frames: list[Any], app: str, host: str) -> bool:
        """Hand the frames to ingest: True once taken (single node: in the store's queue;
        cluster node: settled)."""
        if not frames:
            return True
        config = self.config
        ingest = self._ingest
        origin = Origin(config.name, FORMAT, app, config.source)
        batch = frames_to_lines(frames, app, host, config.source)
        if not ingest.settles:
            taken, failed = ingest.accept_many(origin, batch)
            self._count(len(frames), failed, taken)
            return taken
        loop = asyncio.get_running_loop()
        settled: asyncio.Future[bool] = loop.create_future()

        def settle(ok: bool) -> None:
            loop.call_soon_threadsafe(_resolve, settled, ok)

        taken, failed = ingest.accept_many(origin, batch, settle)
        if taken and len(failed) < len(batch):
            try:
                async with asyncio.timeout(SETTLE_TIMEOUT):
                    taken = await settled
            except TimeoutError:
                # Not known to be safe: Logplex sends again, and the frame id is not marked.
                taken = False
        # (With every frame failed nothing was handed on, and nothing settles.)
        self._count(len(frames), failed, taken)
        return taken

    def _count(self, frames: int, failed: dict[int, Exception], taken: bool) -> None:
        """The lines of a POST taken, and the frames ingest could not make a record of (a
        bug), each logged once: the POST's other frames are taken."""
        if taken:
            self.stats.lines += frames - len(failed)
        for index, exc in failed.items():
            self.stats.frames_failed += 1
            log.error("drain_frame_failed", listener=self.config.name, frame=index,
                      exc_info=exc)


def _resolve(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None past `limit` bytes (chunked bodies have no length)."""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            return b"".join(parts)
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)


def _tls_context(config: DrainConfig) -> ssl.SSLContext:
    assert config.tls_cert is not None
    assert config.tls_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load tls-cert {config.tls_cert} / tls-key "
                          f"{config.tls_key}: {exc}", config.location) from None
    return context
