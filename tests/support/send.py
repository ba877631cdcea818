"""Sending datagrams to a collector under test."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable

from logwire.logcrypto import encrypt, frame


def send(datagrams: Iterable[bytes], port: int, source: str = "127.0.0.1",
         pause_every: int = 200) -> int:
    """Send datagrams to 127.0.0.1:`port` from address `source`; returns how many.

    A short pause every `pause_every` datagrams keeps a test's burst inside the receive
    buffer, so that tests check the collector's logic, not the kernel's buffer size.
    """
    count = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for count, datagram in enumerate(datagrams, start=1):
            sock.sendto(datagram, ("127.0.0.1", port))
            if pause_every and count % pause_every == 0:
                time.sleep(0.002)
    return count


def crypto_lines(lines: Iterable[str], secret: str, algo: str = "aes-256-cbc",
                 prefix: str | None = None, iv: str | None = None) -> list[bytes]:
    """logcrypto datagrams for `lines`, stamped now."""
    now = time.time_ns() // 1000
    head = prefix.encode() if prefix else None
    return [encrypt(frame(line.encode() + b"\n", now + i, head), secret, algo, iv)
            for i, line in enumerate(lines)]
