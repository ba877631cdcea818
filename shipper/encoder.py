"""The sending end of one native stream: numbers datagrams and lines, seals them.

Pure (no sockets, no clock of its own): the caller passes the send time. One encoder is
one stream; a new random 64-bit stream id is drawn for each, so that a restarted sidecar
never reuses a (stream key, sequence number) pair: see docs/PROTOCOL.md.
"""

from __future__ import annotations

import os

from logwire.native import (
    MAX_NAME,
    MAX_PARTS,
    MAX_SEQUENCE,
    PART_HEAD,
    RECORD_HEAD,
    NativeKey,
    StreamCipher,
    budget_room,
    line_records,
    part_record,
    plaintext_head,
    seal_datagram,
    split_line,
)
from shipper.errors import ShipperError


class StreamEncoder:
    """Seals lines into datagrams of at most `budget` bytes for one stream."""

    def __init__(self, key: NativeKey, budget: int, stream_id: int | None = None) -> None:
        self.key = key
        self.budget = budget
        self.stream_id = (int.from_bytes(os.urandom(8)) if stream_id is None
                          else stream_id)
        self._cipher = StreamCipher(key, self.stream_id)
        self.seq = 0
        self.next_line = 0
        # Lines dropped before sealing (queue full), in total; every datagram carries it.
        self.dropped_total = 0

    def room(self, app: bytes, source: bytes) -> int:
        """Record bytes that fit in one datagram for this origin."""
        return budget_room(self.budget, app, source)

    @staticmethod
    def record_size(line: bytes) -> int:
        """Bytes a line takes as a LINE record."""
        return RECORD_HEAD.size + len(line)

    def max_line(self, app: bytes, source: bytes) -> int:
        """The longest line that can be sent (in MAX_PARTS parts); longer ones are cut."""
        return (self.room(app, source) - RECORD_HEAD.size - PART_HEAD.size) * MAX_PARTS

    def seal_lines(self, app: bytes, source: bytes, lines: list[bytes], micros: int) -> bytes:
        """One datagram holding `lines` (which the caller made sure fit)."""
        plain = plaintext_head(self.next_line, self.dropped_total, app, source) + line_records(
            lines)
        datagram = self._seal(plain, micros)
        self.next_line += len(lines)
        return datagram

    def seal_long_line(self, app: bytes, source: bytes, line: bytes, micros: int
                       ) -> list[bytes]:
        """A line too long for one datagram, as consecutive PART datagrams."""
        pieces = split_line(line[:self.max_line(app, source)], self.room(app, source))
        head = plaintext_head(self.next_line, self.dropped_total, app, source)
        datagrams = [self._seal(head + part_record(index, len(pieces), piece), micros)
                     for index, piece in enumerate(pieces)]
        self.next_line += 1
        return datagrams

    def _seal(self, plain: bytes, micros: int) -> bytes:
        if self.seq > MAX_SEQUENCE:
            # 2**64 datagrams: unreachable in practice, and never wrapped to reuse a nonce.
            raise ShipperError("stream sequence numbers exhausted; restart the shipper")
        datagram = seal_datagram(self._cipher, plain, key_id=self.key.key_id,
                                 stream_id=self.stream_id, seq=self.seq, micros=micros)
        self.seq += 1
        return datagram


# The format allows 255 bytes; the sender keeps names short so that even the smallest
# budget leaves room for lines.
NAME_LIMIT = min(64, MAX_NAME)


def clean_name(name: str | bytes | None) -> bytes:
    """An app or source name as the sender puts it in the plaintext (cut at 64 bytes)."""
    if name is None:
        return b""
    raw = name.encode() if isinstance(name, str) else name
    return raw[:NAME_LIMIT]
