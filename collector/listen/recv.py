"""Read every datagram waiting on a non-blocking UDP socket, up to a count, in one call."""

from __future__ import annotations

import socket

from collector import speedups

Received = list[tuple[bytes, str]]


def _recv_loop(sock: socket.socket, max_count: int, max_size: int) -> Received:
    """One recvfrom per datagram until none waits; the pure-Python stand-in for
    recvmmsg(2) (a datagram longer than `max_size` is cut to it, as recvmmsg does)."""
    received: Received = []
    recvfrom = sock.recvfrom
    append = received.append
    while len(received) < max_count:
        try:
            data, addr = recvfrom(max_size)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            # What was read is handed on; the error shows on the next call if it lasts.
            if received:
                break
            raise
        append((data, addr[0]))
    return received


# The compiled recvmmsg(2) when the extension was built; its pure-Python stand-in in
# collector.speedups works from a bare fd, which costs more per call than the loop above
# over the socket object the listener already holds.
_recvmmsg = speedups.recvmmsg if speedups.COMPILED else None


def receive(sock: socket.socket, max_count: int, max_size: int) -> Received:
    """Up to `max_count` waiting datagrams as (payload, sender's numeric host), oldest
    first; [] when none waits. A datagram longer than `max_size` is cut to `max_size`
    bytes, so a caller passes its maximum + 1 and drops anything longer than its maximum.
    Errors other than "nothing waiting" raise OSError."""
    if _recvmmsg is not None:
        return _recvmmsg(sock.fileno(), max_count, max_size)
    return _recv_loop(sock, max_count, max_size)
