"""The pipe protocol between the collector and its store writer process.

A frame is a 4-byte big-endian length, one kind byte, then a `marshal` payload (rows of
plain str/int/float/None, which marshal packs and unpacks in C at a fraction of pickle's
cost). Both ends are this program over a private pipe, so nothing untrusted is unmarshalled.

collector -> writer: ROWS [row, ...] | FLUSH token | QUIT
writer -> collector: COMMITTED (last_id, rows, seconds, frames) | FLUSHED token | READY pid
                     | FAILED (error, rows, attempts)

COMMITTED is sent only once every row of the frames it covers is committed, and covers
whole frames: the `frames` oldest ROWS frames not yet acknowledged (the collector resends
its unacknowledged frames, in order, to a new writer, so both ends count the same frames).
FAILED says a commit failed and will be retried (the rows are kept); the next COMMITTED
means writes work again.
"""

from __future__ import annotations

import marshal
import struct
from typing import Any

ROWS = b"R"
FLUSH = b"F"
QUIT = b"Q"
COMMITTED = b"C"
FLUSHED = b"D"
READY = b"O"
FAILED = b"E"

_HEAD = struct.Struct(">IB")


def encode(kind: bytes, payload: Any) -> bytes:
    """One frame."""
    body = marshal.dumps(payload)
    return _HEAD.pack(len(body), kind[0]) + body


class FrameReader:
    """Accumulates bytes and yields complete frames (sans-I/O)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, Any]]:
        """Add bytes; return the frames now complete, in order."""
        self._buffer += data
        frames: list[tuple[bytes, Any]] = []
        view = self._buffer
        offset = 0
        while len(view) - offset >= _HEAD.size:
            length, kind = _HEAD.unpack_from(view, offset)
            end = offset + _HEAD.size + length
            if len(view) < end:
                break
            # Our own child over a private pipe: the payload is trusted by construction.
            payload = marshal.loads(view[offset + _HEAD.size:end])  # noqa: S302
            frames.append((bytes((kind,)), payload))
            offset = end
        if offset:
            del self._buffer[:offset]
        return frames
