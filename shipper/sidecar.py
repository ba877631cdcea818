"""`shipper run`: the sidecar uWSGI starts with `attach-daemon`.

uWSGI's socket logger sends each log message to a loopback UDP port; the sidecar splits
them into lines, hands them to the batcher and sends the datagrams it seals to the
collector. It stops, after sending what it holds, on SIGTERM or SIGINT (uWSGI sends SIGTERM
to its daemons when it stops or reloads) and when its parent goes away (uWSGI killed hard:
the sidecar is then adopted by another process and must not outlive it).

Only this module does I/O; the batching and sealing it drives are pure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import cast

import structlog

from logwire.bucket import TokenBucket
from logwire.native import NativeKey
from logwire.prefix import split_socket_prefix
from shipper.batcher import Batcher
from shipper.encoder import StreamEncoder, clean_name
from shipper.errors import ShipperError

log = structlog.get_logger("shipper.sidecar")

# `shipper ready` asks whether the sidecar listens yet; no uWSGI log message starts with NUL.
READY_PING = b"\0shipper ready?"
READY_PONG = b"\0shipper ready!"
_PARENT_CHECK = 0.5
_EXIT_FLUSH_SECONDS = 2.0
# The sidecar's own log lines reach uWSGI's loggers and so come back to it: warnings about
# sending are therefore at most one a minute.
_WARN_EVERY = 60.0


@dataclass(frozen=True)
class SidecarConfig:
    """What `shipper run` was told."""

    listen: tuple[str, int]
    collector: tuple[str, int]
    key: NativeKey
    app: str | None = None
    source: str | None = None
    budget: int = 1472
    delay: float = 0.02
    max_lines: int = 20_000
    max_rate: float = 0.0
    watch_parent: bool = True
    # The parent as the command line first saw it: read before anything slow, so that a
    # parent dying while the sidecar starts up is still noticed.
    parent: int = 0


def resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
    """The address family and socket address of HOST:PORT (resolved once, at start)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ShipperError(f"cannot resolve collector {host}:{port}: {exc}") from None
    family, _, _, _, address = found[0]
    return family, cast(tuple[str, int], address[:2])


class Sidecar(asyncio.DatagramProtocol):
    """Receives uWSGI's lines, batches, seals and sends them."""

    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self._app = clean_name(config.app)
        self._source = clean_name(config.source)
        self.encoder = StreamEncoder(config.key, config.budget)
        self.batcher = Batcher(self.encoder, config.delay, config.max_lines)
        self._unsent: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when: float | None = None
        self._writer = False
        self._send_sock: socket.socket | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._bucket = (TokenBucket(config.max_rate, time.monotonic())
                        if config.max_rate > 0 else None)
        self.sent = 0
        self.send_errors = 0
        self._warned_at = -_WARN_EVERY

    def open(self) -> None:
        """Connect the sending socket to the collector."""
        family, address = resolve(*self.config.collector)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            raise ShipperError(f"cannot reach collector {address[0]}:{address[1]}: "
                               f"{exc.strerror}") from None
        sock.setblocking(False)
        self._send_sock = sock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the receiving transport, to answer `shipper ready`."""
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """One message from uWSGI's socket logger: queue its lines, send what is due."""
        if data == READY_PING:
            if self._transport is not None:
                self._transport.sendto(READY_PONG, addr)
            return
        app, source, body = split_socket_prefix(data)
        app = self._app if app is None else clean_name(app)
        source = self._source if source is None else clean_name(source)
        now = time.time()
        for part in body.split(b"\n"):
            line = part.rstrip(b"\r")
            if line:
                self.batcher.add(app, source, line, now)
        self.pump()

    def pump(self) -> None:
        """Send what is due; arm the timer for what is not; wait while blocked."""
        if not self._send_unsent():
            return
        self._unsent = self.batcher.take(time.time())
        if self._send_unsent():
            self._arm(self.batcher.deadline())

    def _send_unsent(self) -> bool:
        """Send held datagrams in order; False while some remain (socket full or rate)."""
        sock = self._send_sock
        assert sock is not None
        bucket = self._bucket
        for sent, datagram in enumerate(self._unsent):
            if bucket is not None and not bucket.take(now := time.monotonic()):
                self._unsent = self._unsent[sent:]
                self._arm(time.time() + bucket.wait(now))
                return False
            try:
                sock.send(datagram)
                self.sent += 1
            except BlockingIOError:
                self._unsent = self._unsent[sent:]
                self._wait_writable()
                return False
            except OSError as exc:
                # ICMP port unreachable and the like: the datagram is gone, and the
                # collector will count its lines lost from the sequence gap.
                self.send_errors += 1
                self._warn("send_failed", error=exc.strerror or str(exc))
        self._unsent = []
        return True

    def _wait_writable(self) -> None:
        if not self._writer and self._send_sock is not None:
            self._writer = True
            asyncio.get_running_loop().add_writer(self._send_sock.fileno(), self._writable)

    def _writable(self) -> None:
        if self._send_sock is not None:
            asyncio.get_running_loop().remove_writer(self._send_sock.fileno())
        self._writer = False
        self.pump()

    def _arm(self, when: float | None) -> None:
        # Most lines join a batch whose deadline is already armed: keep that timer.
        if self._timer is not None and when == self._timer_when:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_when = when
        if when is None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, when - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_when = None
        self.pump()

    def _warn(self, event: str, **context: object) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY:
            self._warned_at = now
            log.warning(event, **context, note="repeats are not logged for a minute")

    def flush_blocking(self, deadline: float) -> None:
        """At exit: seal everything queued and send it, waiting on a full socket until
        `deadline` (monotonic)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._writer and self._send_sock is not None:
            asyncio.get_running_loop().remove_writer(self._send_sock.fileno())
            self._writer = False
        pending = self._unsent + self.batcher.take(time.time(), force=True)
        sock = self._send_sock
        assert sock is not None
        sock.setblocking(True)
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        for datagram in pending:
            if time.monotonic() >= deadline:
                break
            try:
                sock.send(datagram)
                self.sent += 1
            except OSError:
                self.send_errors += 1
        self._unsent = []

    def close(self) -> None:
        """Close the sending socket."""
        if self._send_sock is not None:
            self._send_sock.close()
            self._send_sock = None


def _drain(sock: socket.socket, sidecar: Sidecar) -> None:
    """Read what uWSGI already sent but the loop has not yet delivered."""
    for _ in range(100_000):
        try:
            data, addr = sock.recvfrom(65535)
        except (BlockingIOError, OSError):
            return
        sidecar.datagram_received(data, addr)


def wait_ready(listen: tuple[str, int], timeout: float) -> bool:
    """Ask the sidecar at `listen` until it answers or `timeout` seconds pass.

    Run by uWSGI's `hook-master-start`, which runs after uWSGI has started its daemons
    and before its master reads the log lines written so far: waiting here is what lets
    uWSGI's own start-up lines reach a sidecar that takes a moment to start.
    """
    host, port = listen
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        while time.monotonic() < deadline:
            sock.settimeout(0.1)
            try:
                sock.send(READY_PING)
                if sock.recv(64) == READY_PONG:
                    return True
            except TimeoutError:
                continue
            except OSError:
                # Nothing listens yet (ICMP port unreachable): try again shortly.
                time.sleep(0.05)
    return False


async def run_sidecar(config: SidecarConfig) -> int:
    """Run until SIGTERM/SIGINT or the parent goes away; flush; return the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sidecar = Sidecar(config)
    sidecar.open()
    host, port = config.listen
    recv = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        recv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        recv.bind((host, port))
    except OSError as exc:
        recv.close()
        sidecar.close()
        raise ShipperError(f"cannot listen on udp {host}:{port}: {exc.strerror}") from None
    recv.setblocking(False)
    transport, _ = await loop.create_datagram_endpoint(lambda: sidecar, sock=recv)
    parent = config.parent or os.getppid()
    # Already orphaned (adopted by init): whoever started the sidecar is gone.
    orphaned = config.watch_parent and parent == 1
    log.info("shipper_started", listen=f"{host}:{port}",
             collector=f"{config.collector[0]}:{config.collector[1]}", key=config.key.label,
             stream=f"{sidecar.encoder.stream_id:016x}", parent=parent)
    reason = "parent_gone" if orphaned else "signal"
    while not orphaned and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), _PARENT_CHECK)
        except TimeoutError:
            if config.watch_parent and os.getppid() != parent:
                reason = "parent_gone"
                break
    _drain(recv, sidecar)
    sidecar.flush_blocking(time.monotonic() + _EXIT_FLUSH_SECONDS)
    transport.close()
    sidecar.close()
    log.info("shipper_stopped", reason=reason, lines=sidecar.batcher.lines_in,
             datagrams=sidecar.sent, dropped=sidecar.batcher.dropped,
             send_errors=sidecar.send_errors)
    return 0
