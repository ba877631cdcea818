"""Syslog over TCP and TLS (RFC 6587, RFC 5425): each connection feeds its bytes to a
framer, its frames to the syslog parser, and the lines to ingest.

One catch point per connection: whatever befalls it (a bad length prefix, a failed TLS
handshake, a timeout, a reset) is counted in the listener's `dropped` by reason and ends
that connection alone. Bounds: `max-connections` open at once (one more is closed at
once, `too_many_connections`), a frame of at most `max-frame` bytes held per connection,
a TLS handshake and a begun frame must finish within `frame-timeout` (a slow sender is
closed, `frame_timeout`), a connection silent for `idle-timeout` is closed.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import cast

import structlog

from collector.config.model import ListenerConfig
from collector.decode.framing import Framed, Framer
from collector.decode.result import Decoder, Dropped, Lines
from collector.decode.syslog_lines import SyslogDecoder, syslog_lines
from collector.errors import ConfigError
from collector.ingest import Ingest, Origin
from collector.listen.handoff import Handoff
from collector.listen.stats import ListenerStats
from collector.listen.tls import server_context

log = structlog.get_logger("collector.listen")

class SyslogStreamListener:
    """A TCP or TLS syslog server for one listener config."""

    def __init__(self, config: ListenerConfig, ingest: Ingest) -> None:
        self.config = config
        self.stats = ListenerStats()
        self.rcvbuf = 0
        self._decoder = SyslogDecoder(config.allow, config.source_from)
        self._handoff = Handoff(config, Origin(config.name, "syslog", config.app,
                                               config.source), ingest, self.stats)
        self._tls = server_context(config) if config.transport == "tls" else None
        self._server: asyncio.Server | None = None
        self._connections: set[SyslogConnection] = set()

    async def start(self) -> None:
        """Bind and accept connections (TLS: asyncio runs the handshake first)."""
        config = self.config
        tls = self._tls
        try:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: SyslogConnection(self), config.host, config.port,
                reuse_address=True, ssl=tls,
                ssl_handshake_timeout=config.frame_timeout if tls is not None else None)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.transport} {config.host}:"
                              f"{config.port}: {exc.strerror}", config.location) from None

    def reconfigure(self, config: ListenerConfig, decoder: Decoder) -> None:
        """Take reloaded settings for frames from now on, on the same socket."""
        self.config = config
        self._decoder = SyslogDecoder(config.allow, config.source_from)
        self._handoff.reconfigure(config, Origin(config.name, "syslog", config.app,
                                                 config.source))

    def close(self) -> bool:
        """Stop accepting and drop every connection; False if it was not open."""
        server, self._server = self._server, None
        if server is None:
            return False
        server.close()
        for connection in list(self._connections):
            connection.end(None)
        return True

    def evictions(self) -> Counter[str]:
        """State given up to stay within a bound, by reason (none kept past a frame)."""
        return Counter(self.stats.evicted)

    def held(self) -> dict[str, int]:
        """Connections open now."""
        return {"connections": len(self._connections)}

    def inode(self) -> int | None:
        """No UDP socket, so no kernel drop figures."""
        return None

    @property
    def tls(self) -> bool:
        """Whether connections speak TLS."""
        return self._tls is not None

    @property
    def open(self) -> bool:
        """Whether the listener still accepts."""
        return self._server is not None

    def admit(self, connection: SyslogConnection, host: str) -> str | None:
        """Take a new connection in; the reason it is refused, if it is."""
        if len(self._connections) >= self.config.max_connections:
            log.warning("connection_refused", listener=self.config.name, peer=host,
                        reason="too_many_connections")
            return "too_many_connections"
        if not self._decoder.allowed(host):
            return "not_allowed"
        self._connections.add(connection)
        return None

    def ended(self, connection: SyslogConnection, host: str, reason: str | None) -> None:
        """A connection is over: count why, unless it simply closed."""
        self._connections.discard(connection)
        if reason is not None:
            self.stats.dropped[reason] += 1
            log.info("connection_closed", listener=self.config.name, peer=host,
                     reason=reason)

    def handshake_failed(self) -> None:
        """A TLS connection accepted never finished its handshake (refused certificate,
        not TLS, or too slow): asyncio closed it without telling the protocol."""
        if self._server is None:
            return  # closed meanwhile: the listener's close ended it
        self.stats.dropped["tls_handshake_failed"] += 1
        log.info("connection_closed", listener=self.config.name,
                 reason="tls_handshake_failed")

    def count(self, out: Framed, host: str) -> None:
        """Parse and hand on the frames of one read; count what was dropped."""
        stats = self.stats
        for reason, count in out.dropped.items():
            stats.datagrams += count
            stats.dropped[reason] += count
        if not out.frames:
            return
        stats.datagrams += len(out.frames)
        now = time.time()
        source_from = self._decoder.source_from
        batch: list[tuple[str, Lines]] = []
        for frame in out.frames:
            decoded = syslog_lines(frame, now, source_from)
            if isinstance(decoded, Dropped):
                stats.dropped[decoded.reason] += 1
            else:
                batch.append((host, decoded))
        if batch:
            self._handoff.batch(batch)


class SyslogConnection(asyncio.Protocol):
    """One connection: bytes to the framer, frames to the listener; a timer for the
    idle and frame timeouts (and, on TLS, for a handshake that never completes: asyncio
    runs it before `connection_made` and on failure closes without telling us).

    Frames are handed on as each read completes them, in `data_received`, so nothing
    read is held back: a peer that resets or leaves loses only its unfinished frame.
    """

    def __init__(self, listener: SyslogStreamListener) -> None:
        self._listener = listener
        config = listener.config
        self._framer = Framer(config.max_frame)
        self._transport: asyncio.Transport | None = None
        self._host = ""
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._frame_began = 0.0
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        if listener.tls:
            self._timer = self._loop.call_later(config.frame_timeout + 1.0,
                                                listener.handshake_failed)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the peer (or close at once) and start the timeouts."""
        # uvloop's transports are not asyncio.Transport subclasses; a stream's is one.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if self._timer is not None:
            self._timer.cancel()
        peer = transport.get_extra_info("peername")
        self._host = str(peer[0]) if peer else ""
        refused = self._listener.admit(self, self._host) if self._listener.open else "closed"
        if refused is not None:
            self._done = True
            if refused != "closed":
                self._listener.stats.dropped[refused] += 1
            transport.abort()
            return
        self._last = self._loop.time()
        self._arm(self._listener.config.idle_timeout)

    def _arm(self, delay: float) -> None:
        self._timer = self._loop.call_at(self._loop.time() + max(delay, 0.0), self._check)

    def _check(self) -> None:
        """Close a connection past its idle or frame deadline; else look again then."""
        config = self._listener.config
        now = self._loop.time()
        if self._framer.pending:
            left, why = self._frame_began + config.frame_timeout - now, "frame_timeout"
        else:
            left, why = self._last + config.idle_timeout - now, "idle_timeout"
        if left <= 0:
            self.end(why)
        else:
            self._arm(left)

    def data_received(self, data: bytes) -> None:
        """Feed the framer; hand on the frames; end the connection on a framing error."""
        if self._done:
            return
        framer = self._framer
        was_pending = framer.pending
        out = framer.feed(data)
        now = self._loop.time()
        self._last = now
        if framer.pending and (out.frames or out.dropped or not was_pending):
            # The frame still open began within this read: its deadline is sooner than
            # the idle one the timer may be set for.
            self._frame_began = now
            if not was_pending:
                if self._timer is not None:
                    self._timer.cancel()
                self._arm(self._listener.config.frame_timeout)
        try:
            self._listener.count(out, self._host)
        except Exception:
            log.exception("connection_failed", listener=self._listener.config.name,
                          peer=self._host)
            self.end("internal_error")
            return
        if out.error is not None:
            self.end(out.error)

    def eof_received(self) -> bool:
        """The peer is done sending: what is left of a frame is lost; close."""
        self.end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Gone: a reset or TLS error is counted (`connection_error`)."""
        self.end(None if exc is None else "connection_error")

    def end(self, reason: str | None) -> None:
        """Close once: count the unfinished frame and the reason."""
        if self._done:
            return
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
        self._listener.count(self._framer.close(), self._host)
        self._listener.ended(self, self._host, reason)
        if self._transport is not None:
            self._transport.abort()


async def start_syslog_stream(config: ListenerConfig, ingest: Ingest) -> SyslogStreamListener:
    """Bind and start one TCP or TLS syslog listener on the running loop."""
    listener = SyslogStreamListener(config, ingest)
    await listener.start()
    log.info("listener_started", listener=config.name, format="syslog",
             transport=config.transport, address=f"{config.host}:{config.port}",
             client_certificates=config.tls_client_ca is not None)
    return listener
