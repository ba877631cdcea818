"""A listener with `receivers = K` (K > 1): K receiver processes on one port.

The collector binds K sockets to the listener's address with SO_REUSEPORT and starts one
receiver process (collector.listen.receiver) per socket. The kernel hashes each sender's
4-tuple to one socket, so one sender socket always reaches the same receiver: the native
format's per-sender streams and sequence numbers, and the crypto replay window, stay whole.
Each receiver decodes and hands compact batches over a pipe; this side builds records from
them (ids, request fields, alarms, fan-out, store), in each receiver's order.

The sockets belong to the collector, not to the receivers: a receiver that dies is
restarted on the same socket (what waited in its kernel buffer is still there), and the
kernel keeps hashing senders the same way. The counters add up over the receivers as the
single-process listener's do; a datagram is counted (received, and accepted or dropped)
only once its batch reached this side, so a receiver killed mid-batch leaves the sums
right.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import structlog

from collector.config.model import ListenerConfig
from collector.decode.result import Decoder, Lines
from collector.errors import ConfigError
from collector.ingest import Ingest, Origin
from collector.listen import receiver
from collector.listen.handoff import Handoff
from collector.listen.stats import ListenerStats
from collector.listen.streams import StreamListener
from collector.listen.udp import DatagramListener, grow_receive_buffer, receive_buffer_advice
from collector.store.frames import FrameReader

log = structlog.get_logger("collector.listen")

# A receiver that dies is restarted after RESTART_FIRST seconds, doubling up to RESTART_MAX
# while new ones keep dying young (within SETTLED seconds of starting).
RESTART_FIRST = 0.2
RESTART_MAX = 30.0
SETTLED = 30.0
# How long a stopping receiver may take to hand over its last batch before it is killed.
STOP_WAIT = 10.0
# How long a receiver may take to import and build its decoder at the collector's start.
READY_WAIT = 20.0
# Pipe room per receiver: a few milliseconds of batches at full rate; beyond it the
# receiver blocks and its socket's kernel buffer takes the burst.
PIPE_SIZE = 1 << 20


def bind_reuseport(config: ListenerConfig) -> socket.socket:
    """One of the listener's K sockets: SO_REUSEPORT, the configured receive buffer."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        grow_receive_buffer(sock, config.rcvbuf)
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on udp {config.host}:{config.port} with "
                          f"receivers = {config.receivers}: {exc.strerror}",
                          config.location) from None
    sock.setblocking(False)
    return sock


class _Slot:
    """One receiver: its socket (kept across restarts) and the process reading it."""

    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.process: subprocess.Popen[bytes] | None = None
        self.transport: asyncio.ReadTransport | None = None
        self.ended: asyncio.Future[None] | None = None
        # Set by the receiver's first frame (a STATE once its decoder is built).
        self.ready: asyncio.Future[None] | None = None
        self.started_at = 0.0
        self.restart_delay = RESTART_FIRST
        self.evicted: Counter[str] = Counter()
        self.held: dict[str, int] = {}
        # Datagrams this slot's receivers handed over: how the kernel spread the senders.
        self.datagrams = 0


class _FrameProtocol(asyncio.Protocol):
    """Reads one receiver process's frames."""

    def __init__(self, group: ReceiverGroup, slot: _Slot,
                 process: subprocess.Popen[bytes], ended: asyncio.Future[None]) -> None:
        self._group = group
        self._slot = slot
        self._process = process
        self._ended = ended
        self._reader = FrameReader()

    def data_received(self, data: bytes) -> None:
        ready = self._slot.ready
        if ready is not None and not ready.done():
            ready.set_result(None)
        for kind, payload in self._reader.feed(data):
            self._group._frame(self._slot, kind, payload)

    def connection_lost(self, exc: Exception | None) -> None:
        ready = self._slot.ready
        if ready is not None and not ready.done():
            ready.set_exception(EOFError("the receiver exited while starting"))
        # A frame cut short by a death is not counted at all: neither received nor
        # accepted, so the sums stay right.
        if not self._ended.done():
            self._ended.set_result(None)
        self._group._receiver_lost(self._slot, self._process)


class ReceiverGroup:
    """The main-process side of a listener with K receiver processes (see the module)."""

    def __init__(self, config: ListenerConfig, ingest: Ingest, sockets: list[socket.socket],
                 log_level: str = "info", log_format: str = "console") -> None:
        self.config = config
        self.stats = ListenerStats()
        self._handoff = Handoff(config, Origin(config.name, config.format, config.app,
                                               config.source), ingest, self.stats)
        self._slots = [_Slot(i, sock) for i, sock in enumerate(sockets)]
        self._log_args = [log_level, log_format]
        self._closing = False
        # Restarts after a death (cancelled on close) and replacements after a reload
        # (awaited on close: a receiver being replaced hands over its last batch too).
        self._restarts: set[asyncio.Task[None]] = set()
        self._replacing: set[asyncio.Task[None]] = set()
        # One reload's replacement at a time, so that no slot ever gets two receivers.
        self._replace_lock = asyncio.Lock()
        # Evictions counted by receivers that have since been replaced.
        self._retired: Counter[str] = Counter()
        self.restarts = 0
        self.rcvbuf = int(sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start a receiver on each socket; return once each has built its decoder and
        said so (a receiver that cannot start fails the listener's start)."""
        for slot in self._slots:
            await self._spawn(slot)
        for slot in self._slots:
            assert slot.ready is not None
            try:
                await asyncio.wait_for(slot.ready, READY_WAIT)
            except (TimeoutError, EOFError):
                raise ConfigError(
                    f"listener {self.config.name}: receiver {slot.index} did not start "
                    f"within {READY_WAIT:g} s (see its error above)",
                    self.config.location) from None

    async def _spawn(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        fd = slot.sock.fileno()
        # Popen returns once the child is forked; it then reads its config from the pipe.
        process = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "collector.listen.receiver", str(fd), *self._log_args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(fd,))
        assert process.stdin is not None
        assert process.stdout is not None
        with contextlib.suppress(OSError):
            fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, _pipe_size())
        process.stdin.write(receiver.encode_config(self.config))
        process.stdin.flush()
        ended: asyncio.Future[None] = loop.create_future()
        slot.process, slot.ended, slot.started_at = process, ended, loop.time()
        slot.ready = loop.create_future()
        slot.transport, _ = await loop.connect_read_pipe(
            lambda: _FrameProtocol(self, slot, process, ended), process.stdout)

    async def _stop_child(self, slot: _Slot) -> None:
        """Have the receiver hand over its last batch and exit; take every frame it sent."""
        process, ended = slot.process, slot.ended
        if process is None or ended is None:
            return
        slot.process = None
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(ended), STOP_WAIT)
        except TimeoutError:
            log.error("receiver_killed", listener=self.config.name, receiver=slot.index,
                      pid=process.pid, waited=STOP_WAIT)
            with contextlib.suppress(OSError):
                process.kill()
        await _reap(process)
        self._retire(slot)

    def _retire(self, slot: _Slot) -> None:
        self._retired.update(slot.evicted)
        slot.evicted = Counter()
        slot.held = {}

    async def close(self) -> None:
        """Stop the receivers (each hands over what it decoded), then close the sockets."""
        self._closing = True
        for task in list(self._restarts):
            task.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        await asyncio.gather(*(self._stop_child(slot) for slot in self._slots))
        for slot in self._slots:
            slot.sock.close()
        log.info("listener_stopped", listener=self.config.name,
                 receivers=len(self._slots))

    def reconfigure(self, config: ListenerConfig, decoder: Decoder) -> None:
        """Take a reloaded listener's settings: each receiver in turn hands over what it
        has and is replaced by one with the new settings, on the same socket (what is sent
        meanwhile waits in the kernel buffer). Decoder state (replay windows, native
        streams) starts afresh, as after a restart. `decoder` is the main process's check
        that the settings build one; each receiver builds its own."""
        self.config = config
        self._handoff.reconfigure(config, Origin(config.name, config.format, config.app,
                                                 config.source))
        for slot in self._slots:
            with contextlib.suppress(OSError):
                grow_receive_buffer(slot.sock, config.rcvbuf)
        self.rcvbuf = int(self._slots[0].sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        self._run(self._replace_all(), self._replacing)
        log.info("listener_reconfigured", listener=config.name, format=config.format,
                 address=f"{config.host}:{config.port}", receivers=len(self._slots))

    async def _replace_all(self) -> None:
        async with self._replace_lock:
            for slot in self._slots:
                if self._closing:
                    return
                await self._stop_child(slot)
                if not self._closing:
                    await self._spawn(slot)

    @staticmethod
    def _run(coroutine: Any, tasks: set[asyncio.Task[None]]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _receiver_lost(self, slot: _Slot, process: subprocess.Popen[bytes]) -> None:
        if self._closing or process is not slot.process:
            return  # stopping on purpose (shutdown, reload)
        slot.process = None
        loop = asyncio.get_running_loop()
        lived = loop.time() - slot.started_at
        if lived >= SETTLED:
            slot.restart_delay = RESTART_FIRST
        delay = slot.restart_delay
        slot.restart_delay = min(delay * 2, RESTART_MAX)
        self.restarts += 1
        log.error("receiver_died", listener=self.config.name, receiver=slot.index,
                  pid=process.pid, exit_code=process.poll(), lived=round(lived, 3),
                  restart_in=delay, restarts=self.restarts,
                  note="the others go on; what it handed over is kept")
        self._retire(slot)
        self._run(self._restart(slot, process, delay), self._restarts)

    async def _restart(self, slot: _Slot, dead: subprocess.Popen[bytes],
                       delay: float) -> None:
        await _reap(dead)
        await asyncio.sleep(delay)
        # A reload meanwhile may have started this slot's receiver already.
        while not self._closing and slot.process is None:
            try:
                await self._spawn(slot)
                return
            except OSError as exc:
                log.error("receiver_restart_failed", listener=self.config.name,
                          receiver=slot.index, error=str(exc))
                await asyncio.sleep(RESTART_MAX)

    # -- frames ----------------------------------------------------------------------

    def _frame(self, slot: _Slot, kind: bytes, payload: Any) -> None:
        """The one catch point for a receiver's frame: a bug is logged and counted."""
        try:
            if kind == receiver.BATCH:
                slot.datagrams += payload[0]
                self._batch(*payload)
            elif kind == receiver.STATE:
                slot.evicted = Counter(payload[0])
                slot.held = payload[1]
        except Exception:
            self.stats.dropped["internal_error"] += 1
            log.exception("receiver_frame_failed", listener=self.config.name,
                          receiver=slot.index)

    def _batch(self, datagrams: int, dropped: dict[str, int],
               items: list[tuple[Any, ...]]) -> None:
        stats = self.stats
        stats.datagrams += datagrams
        if dropped:
            stats.dropped.update(dropped)
        decoded = [(host, Lines(lines, app, source, emitted_at, escaped, markers, lost))
                   for host, lines, app, source, emitted_at, escaped, markers, lost in items]
        if decoded:
            self._handoff.batch(decoded)

    # -- figures ---------------------------------------------------------------------

    def evictions(self) -> Counter[str]:
        """State given up to stay within a bound, by reason, over all receivers (those
        replaced included)."""
        counts = Counter(self.stats.evicted)
        counts.update(self._retired)
        for slot in self._slots:
            counts.update(slot.evicted)
        return counts

    def held(self) -> dict[str, int]:
        """What the receivers' decoders hold now, by kind, summed."""
        total: Counter[str] = Counter()
        for slot in self._slots:
            total.update(slot.held)
        return dict(total)

    def inodes(self) -> list[int]:
        """The K sockets' inodes, to find their kernel drops in /proc/net/udp."""
        return [os.fstat(slot.sock.fileno()).st_ino for slot in self._slots
                if slot.sock.fileno() >= 0]

    def inode(self) -> int | None:
        """The first socket's inode (see `inodes` for all)."""
        inodes = self.inodes()
        return inodes[0] if inodes else None

    def spread(self) -> list[int]:
        """Datagrams received by each receiver (socket), in order."""
        return [slot.datagrams for slot in self._slots]

    def pids(self) -> list[int]:
        """The running receivers' process ids."""
        return [slot.process.pid for slot in self._slots if slot.process is not None]


def _pipe_size() -> int:
    size = PIPE_SIZE
    with contextlib.suppress(OSError, ValueError):
        size = min(size, int(Path("/proc/sys/fs/pipe-max-size").read_text()))
    return size


async def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        await asyncio.to_thread(process.wait, STOP_WAIT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, 5)


async def start_receivers(config: ListenerConfig, ingest: Ingest, log_level: str = "info",
                          log_format: str = "console") -> ReceiverGroup:
    """Bind K SO_REUSEPORT sockets on the listener's address and start a receiver on each."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(config.receivers):
            sockets.append(bind_reuseport(config))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    group = ReceiverGroup(config, ingest, sockets, log_level, log_format)
    try:
        await group.start()
    except BaseException:
        await group.close()
        raise
    log.info("listener_started", listener=config.name, format=config.format,
             address=f"{config.host}:{config.port}", rcvbuf=group.rcvbuf,
             rcvbuf_configured=config.rcvbuf, receivers=config.receivers,
             pids=group.pids())
    advice = receive_buffer_advice(config.rcvbuf, group.rcvbuf)
    if advice is not None:
        log.warning("receive_buffer_small", listener=config.name, rcvbuf=group.rcvbuf,
                    rcvbuf_configured=config.rcvbuf, fix=advice,
                    note="bursts beyond the buffer are dropped by the kernel; or run the "
                         "collector with CAP_NET_ADMIN (as root), which passes rmem_max")
    return group


Listener = DatagramListener | ReceiverGroup | StreamListener
"""A running listener: received in the main process, or by K receiver processes, or a
stream listener (TCP, TLS; collector/listen/streams.py)."""


def listener_inodes(listener: Listener) -> list[int]:
    """The inodes of a listener's sockets (one, or K), for their kernel drops."""
    if isinstance(listener, ReceiverGroup):
        return listener.inodes()
    inode = listener.inode()
    return [] if inode is None else [inode]
