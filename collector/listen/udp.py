"""The UDP listener: reads datagrams in batches, only decodes and hands on."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence

import structlog

from collector.config.model import ListenerConfig
from collector.decode.result import Decoder
from collector.errors import ConfigError
from collector.ingest import Ingest, Origin
from collector.listen.handoff import Handoff
from collector.listen.intake import Intake
from collector.listen.recv import receive
from collector.listen.stats import ListenerStats

log = structlog.get_logger("collector.listen")


# Datagrams taken per receive call, and calls per wake-up while the socket stays full:
# enough that a burst is read in few wake-ups and shares one store frame, few enough that
# the loop still serves HTTP, alarms and followers every few milliseconds under a flood.
MAX_BATCH = 256
MAX_READS = 2


class DatagramListener:
    """Reads every waiting datagram per wake-up and feeds them, as one batch, through the
    decoder to ingest.

    Each datagram has its own catch point: whatever goes wrong with one is counted under a
    reason and the others of its batch are served as usual.
    """

    def __init__(self, config: ListenerConfig, decoder: Decoder, ingest: Ingest) -> None:
        self.config = config
        self.stats = ListenerStats()
        self._intake = Intake(config, decoder)
        self._handoff = Handoff(config, Origin(config.name, decoder.format, config.app,
                                               config.source), ingest, self.stats)
        # The receive buffer the kernel granted (getsockopt SO_RCVBUF), set once bound.
        self.rcvbuf = 0
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def reconfigure(self, config: ListenerConfig, decoder: Decoder) -> None:
        """Take a reloaded listener's settings on the same socket, from the next datagram.

        The socket stays open, so nothing sent meanwhile is lost (a rotated secret, an
        allow list or a rate limit takes effect without a gap); the figures carry on.
        """
        self.config = config
        self._intake = Intake(config, decoder)
        self._handoff.reconfigure(config, Origin(config.name, decoder.format, config.app,
                                                 config.source))
        sock = self._sock
        if sock is not None:
            try:
                self.rcvbuf = grow_receive_buffer(sock, config.rcvbuf)
            except OSError as exc:
                log.warning("rcvbuf_not_changed", listener=config.name, error=exc.strerror)
            else:
                _warn_if_short(config, self.rcvbuf)
        log.info("listener_reconfigured", listener=config.name, format=decoder.format,
                 address=f"{config.host}:{config.port}")

    def attach(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """Read the bound, non-blocking `sock` whenever it is readable on `loop`."""
        self._sock = sock
        self._loop = loop
        loop.add_reader(sock.fileno(), self._readable)

    def close(self) -> bool:
        """Stop reading and close the socket; False if it was not open."""
        sock, self._sock = self._sock, None
        if sock is None:
            return False
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()
        return True

    def _readable(self) -> None:
        """Take what waits on the socket, a batch at a time, a bounded number of times."""
        for _ in range(MAX_READS):
            sock = self._sock
            if sock is None:
                return
            try:
                # One byte past the maximum, so an oversize datagram shows as one.
                batch = receive(sock, MAX_BATCH, self._intake.max_datagram + 1)
            except OSError as exc:
                self.error_received(exc)
                return
            if not batch:
                return
            self.datagrams_received(batch)
            if len(batch) < MAX_BATCH:
                return

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """Decode one datagram and hand its lines on (a batch of one)."""
        self.datagrams_received([(data, str(addr[0]))])

    def datagrams_received(self, batch: Sequence[tuple[bytes, str]]) -> None:
        """Decode datagrams (payload, sender's host) and hand their lines on together;
        count each one whatever happens to it."""
        stats = self.stats
        stats.datagrams += len(batch)
        decoded = self._intake.take(batch, time.time(), stats.dropped)
        if decoded:
            self._handoff.batch(decoded)

    def evictions(self) -> Counter[str]:
        """State given up to stay within a bound, by reason, over the listener's parts."""
        return self.stats.evicted + self._intake.evictions()

    def held(self) -> dict[str, int]:
        """What the decoder holds for its senders now, by kind (empty if nothing)."""
        return self._intake.held()

    def error_received(self, exc: Exception) -> None:
        """Socket errors (ICMP and the like) on a receive-only socket are only noted."""
        log.debug("socket_error", listener=self.config.name, error=str(exc))

    def inode(self) -> int | None:
        """The socket's inode, to find it in /proc/net/udp."""
        sock = self._sock
        return os.fstat(sock.fileno()).st_ino if sock is not None else None


# Linux's number for SO_RCVBUFFORCE (asm-generic/socket.h); Python's socket module does
# not export the name, and without it the buffer silently stays at net.core.rmem_max.
_LINUX_SO_RCVBUFFORCE = 33


def bind_udp(config: ListenerConfig) -> socket.socket:
    """Bind the listener's socket with a large receive buffer (bursts wait in the kernel)."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        grow_receive_buffer(sock, config.rcvbuf)
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on udp {config.host}:{config.port}: {exc.strerror}",
                          config.location) from None
    sock.setblocking(False)
    return sock


def force_option(platform: str = sys.platform) -> int | None:
    """The socket option that sets a receive buffer past net.core.rmem_max, if any."""
    named: int | None = getattr(socket, "SO_RCVBUFFORCE", None)
    if named is not None:
        return named
    return _LINUX_SO_RCVBUFFORCE if platform.startswith("linux") else None


def grow_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a `size`-byte receive buffer; return what the kernel reports it granted.

    SO_RCVBUFFORCE passes net.core.rmem_max for a process with CAP_NET_ADMIN (root);
    without it (EPERM) SO_RCVBUF is used, which the kernel caps at rmem_max. Either way
    the kernel reports (and grants) twice what it was asked, for its own bookkeeping.
    """
    option = force_option()
    if option is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            option = None
    if option is None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def receive_buffer_advice(wanted: int, obtained: int) -> str | None:
    """None when the buffer obtained holds the `wanted` bytes; otherwise the command that
    lets the kernel grant them (or run the collector with CAP_NET_ADMIN, e.g. as root)."""
    if obtained >= wanted:
        return None
    return f"sysctl -w net.core.rmem_max={wanted}"


def _warn_if_short(config: ListenerConfig, obtained: int) -> None:
    advice = receive_buffer_advice(config.rcvbuf, obtained)
    if advice is not None:
        log.warning("receive_buffer_small", listener=config.name, rcvbuf=obtained,
                    rcvbuf_configured=config.rcvbuf, fix=advice,
                    note="bursts beyond the buffer are dropped by the kernel; or run the "
                         "collector with CAP_NET_ADMIN (as root), which passes rmem_max")


async def start_listener(config: ListenerConfig, decoder: Decoder, ingest: Ingest
                         ) -> DatagramListener:
    """Bind and start one listener on the running loop."""
    loop = asyncio.get_running_loop()
    sock = bind_udp(config)
    obtained = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    protocol = DatagramListener(config, decoder, ingest)
    protocol.rcvbuf = obtained
    protocol.attach(sock, loop)
    log.info("listener_started", listener=config.name, format=decoder.format,
             address=f"{config.host}:{config.port}", rcvbuf=obtained,
             rcvbuf_configured=config.rcvbuf)
    _warn_if_short(config, obtained)
    return protocol
