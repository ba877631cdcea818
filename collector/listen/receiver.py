"""One receiver process of a listener with `receivers = K` (K > 1): `python -m
collector.listen.receiver FD`, started by collector.listen.receivers.

It owns no socket of its own making: the collector binds K sockets to the listener's port
with SO_REUSEPORT and hands this process one of them (file descriptor FD), so a receiver
that dies and is restarted gets the same socket, and what waits in its kernel buffer.

It does the per-datagram work that needs no state beyond its own senders' (the kernel
keeps one sender socket on one receiver): receive many datagrams per call, the size and
rate checks, and the listener's decoder (decrypt, skew, replay, prefix, split lines). It
writes compact batches to stdout; the collector builds records from them, in order.

stdin: a pickled ListenerConfig (4-byte big-endian length first), then nothing; EOF
means stop: the batch in hand is written and the process exits.

stdout (collector.store.frames framing):
  BATCH (datagrams, {reason: dropped}, [(host, lines, app, source, emitted_at, escaped,
        markers, lost), ...]): counts since the previous BATCH and the datagrams decoded;
  STATE ({reason: evicted}, {kind: held}): the decoder's bounded state, absolute, sent
        first (the receiver is up), every STATE_EVERY seconds, and before exiting.
Writes block when the pipe is full: the receiver then stops reading its socket, and the
kernel drops (counted per socket in /proc/net/udp) instead of memory growing.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence

import structlog

from collector.config.model import ListenerConfig
from collector.decode.result import Decoder
from collector.listen.decoders import make_decoder
from collector.listen.intake import Intake
from collector.listen.recv import receive
from collector.store.frames import encode
from logwire.logsetup import configure_logging

log = structlog.get_logger("collector.listen.receiver")

BATCH = b"B"
STATE = b"S"
# Datagrams per receive call, and calls per wake-up before the control pipe is looked at.
RECV_COUNT = 64
RECV_CALLS = 16
STATE_EVERY = 0.5
_LENGTH = struct.Struct(">I")

Receive = Callable[[socket.socket, int, int], list[tuple[bytes, str]]]


def encode_config(config: ListenerConfig) -> bytes:
    """The config message the collector writes first to a receiver's stdin."""
    body = pickle.dumps(config)
    return _LENGTH.pack(len(body)) + body


def _read_exactly(fd: int, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = os.read(fd, count - len(data))
        if not chunk:
            raise EOFError("the collector closed the pipe before the config")
        data += chunk
    return data


def read_config(fd: int) -> ListenerConfig:
    """The ListenerConfig the collector wrote to `fd`."""
    (length,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
    # Our own parent over a private pipe: the payload is trusted by construction.
    config = pickle.loads(_read_exactly(fd, length))  # noqa: S301
    if not isinstance(config, ListenerConfig):
        raise TypeError("expected a ListenerConfig")
    return config


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data`, blocking while the pipe is full (that is the back-pressure)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Receiver:
    """Decodes what one socket receives into BATCH frames (sans-I/O but for `receive`)."""

    def __init__(self, config: ListenerConfig, decoder: Decoder | None = None,
                 receive_call: Receive = receive) -> None:
        self.config = config
        self._intake = Intake(config, decoder if decoder is not None else make_decoder(config))
        self._receive = receive_call

    def batch(self, datagrams: Sequence[tuple[bytes, str]], now: float) -> bytes:
        """One BATCH frame for these datagrams."""
        dropped: Counter[str] = Counter()
        items = [(host, result.lines, result.app, result.source, result.emitted_at,
                  result.escaped, result.markers, result.lost)
                 for host, result in self._intake.take(datagrams, now, dropped)]
        return encode(BATCH, (len(datagrams), dict(dropped), items))

    def state(self) -> bytes:
        """One STATE frame: the decoder's evictions and what it holds now."""
        return encode(STATE, (dict(self._intake.evictions()), self._intake.held()))

    def run(self, sock: socket.socket, control: int, out: int) -> None:
        """Receive and hand on until `control` reaches EOF."""
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ, "socket")
        selector.register(control, selectors.EVENT_READ, "control")
        size = self._intake.max_datagram + 1
        state_due = time.monotonic() + STATE_EVERY
        # The first frame says this receiver is up (the collector waits for it at start).
        write_all(out, self.state())
        try:
            while True:
                for key, _ in selector.select(STATE_EVERY):
                    if key.data == "control":
                        if not os.read(control, 4096):
                            return
                        continue
                    for _ in range(RECV_CALLS):
                        datagrams = self._receive(sock, RECV_COUNT, size)
                        if not datagrams:
                            break
                        write_all(out, self.batch(datagrams, time.time()))
                if time.monotonic() >= state_due:
                    write_all(out, self.state())
                    state_due = time.monotonic() + STATE_EVERY
        finally:
            selector.close()
            write_all(out, self.state())


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m collector.listen.receiver FD LOG_LEVEL LOG_FORMAT`."""
    args = list(sys.argv[1:] if argv is None else argv)
    fd = int(args[0])
    # Signals to the process group are the collector's business: it stops its receivers
    # by closing their stdin once its own shutdown reaches the listeners.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    configure_logging(args[1] if len(args) > 1 else "info",
                      args[2] if len(args) > 2 else "console")
    control, out = sys.stdin.fileno(), sys.stdout.fileno()
    config = read_config(control)
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    Receiver(config).run(sock, control, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
