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
import ssl
import time
from collections import Counter
from collections.abc import Callable

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

READ_SIZE = 1 << 16


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
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and accept connections."""
        config = self.config
        try:
            loop = asyncio.get_running_loop()
            tls = self._tls

            def protocol() -> asyncio.StreamReaderProtocol:
                reader = asyncio.StreamReader(limit=READ_SIZE, loop=loop)
                made = _Protocol(reader, self._serve, loop=loop)
                if tls is not None:
                    made.watch_handshake(config.frame_timeout + 1.0, self._handshake_failed)
                return made

            self._server = await loop.create_server(
                protocol, config.host, config.port, reuse_address=True, ssl=tls,
                ssl_handshake_timeout=config.frame_timeout if tls is not None else None)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.transport} {config.host}:"
                              f"{config.port}: {exc.strerror}", config.location) from None

    def _handshake_failed(self) -> None:
        """A TLS connection accepted never finished its handshake (refused certificate,
        not TLS, or too slow): asyncio closed it without telling the protocol."""
        if self._server is None:
            return  # closed meanwhile: the listener's close ended it
        self.stats.dropped["tls_handshake_failed"] += 1
        log.info("connection_closed", listener=self.config.name,
                 reason="tls_handshake_failed")

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
        for task in list(self._tasks):
            task.cancel()
        return True

    def evictions(self) -> Counter[str]:
        """State given up to stay within a bound, by reason (none kept past a frame)."""
        return Counter(self.stats.evicted)

    def held(self) -> dict[str, int]:
        """Connections open now."""
        return {"connections": len(self._tasks)}

    def inode(self) -> int | None:
        """No UDP socket, so no kernel drop figures."""
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        """One connection, from accept to close."""
        task = asyncio.current_task()
        assert task is not None
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        dropped = self.stats.dropped
        if len(self._tasks) >= self.config.max_connections:
            dropped["too_many_connections"] += 1
            log.warning("connection_refused", listener=self.config.name, peer=host,
                        reason="too_many_connections")
            writer.transport.abort()
            return
        if not self._decoder.allowed(host):
            dropped["not_allowed"] += 1
            writer.transport.abort()
            return
        self._tasks.add(task)
        try:
            reason = await self._connection(reader, writer, host)
        except asyncio.CancelledError:
            reason = None
        except Exception:
            reason = "internal_error"
            log.exception("connection_failed", listener=self.config.name, peer=host)
        finally:
            self._tasks.discard(task)
            writer.transport.abort()
        if reason is not None:
            dropped[reason] += 1
            log.info("connection_closed", listener=self.config.name, peer=host, reason=reason)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          host: str) -> str | None:
        """Read until the peer closes (None) or something ends the connection (why)."""
        config = self.config
        framer = Framer(config.max_frame)
        loop = asyncio.get_running_loop()
        frame_began = 0.0
        while True:
            if framer.pending:
                timeout, why = frame_began + config.frame_timeout - loop.time(), "frame_timeout"
            else:
                timeout, why = config.idle_timeout, "idle_timeout"
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), max(timeout, 0.0))
            except TimeoutError:
                self._count(framer.close())
                return why
            except (ssl.SSLError, ConnectionError, OSError):
                self._count(framer.close())
                return "connection_error"
            if not data:
                self._count(framer.close())
                return None
            was_pending = framer.pending
            out = framer.feed(data)
            if framer.pending and (out.frames or out.dropped or not was_pending):
                # The frame still open began within this read.
                frame_began = loop.time()
            self._count(out, host)
            if out.error is not None:
                log.info("frame_error", listener=config.name, peer=host, reason=out.error)
                return out.error

    def _count(self, out: Framed, host: str = "") -> None:
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


class _Protocol(asyncio.StreamReaderProtocol):
    """asyncio's stream protocol that, on a TLS listener, counts a handshake that never
    completes: asyncio runs the handshake before `connection_made` and, when it fails,
    closes the connection without a word to the protocol. (Upgrading with `start_tls`
    instead would tell, but lost ClientHellos under concurrent connects: bench/syslog.py
    showed handshakes hanging.)"""

    _timer: asyncio.TimerHandle | None = None

    def watch_handshake(self, within: float, failed: Callable[[], None]) -> None:
        """Call `failed` unless the connection is made within `within` seconds (asyncio's
        handshake timeout is shorter)."""
        self._timer = asyncio.get_running_loop().call_later(within, failed)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The handshake (if any) completed: no failure to count."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_made(transport)


async def start_syslog_stream(config: ListenerConfig, ingest: Ingest) -> SyslogStreamListener:
    """Bind and start one TCP or TLS syslog listener on the running loop."""
    listener = SyslogStreamListener(config, ingest)
    await listener.start()
    log.info("listener_started", listener=config.name, format="syslog",
             transport=config.transport, address=f"{config.host}:{config.port}",
             client_certificates=config.tls_client_ca is not None)
    return listener
