"""RFC 6587 framing of a syslog byte stream (TCP, TLS): an incremental, pure framer.

The framing is chosen per connection from its first byte: a digit means octet counting
(`LEN SP MSG`, RFC 5425 and rsyslog's `TCP_Framing="octet-counted"`), anything else
non-transparent framing (each message ends at LF; a CR before it is dropped). Whatever the
split of the stream into reads, the same frames and the same errors come out.

Bounds: no frame longer than `max_frame` is held. An octet-counted frame announced longer
is skipped as it arrives (counted `oversize_frame`; the connection goes on); an LF frame
that outgrows it is dropped up to its LF (counted the same). A length prefix that is not
1 to 10 digits and a space is an error of the connection (`bad_length`): the stream can
no longer be split, so it is closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_PREFIX = 10


@dataclass(slots=True)
class Framed:
    """What one `feed` made of the bytes: complete frames, frames dropped by reason, and
    the connection's fatal error if it has one (no more frames come after it)."""

    frames: list[bytes] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def drop(self, reason: str) -> None:
        """Count one frame dropped for `reason`."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


class Framer:
    """Splits one connection's stream into frames; feed it bytes as they come."""

    __slots__ = ("_buffer", "_error", "_max_frame", "_mode", "_need", "_skip", "_skipping_lf")

    def __init__(self, max_frame: int) -> None:
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._mode: str | None = None  # "octet" or "lf", from the first byte
        self._need = -1  # octet counting: the frame's length once its prefix is read
        self._skip = 0  # octet counting: bytes of an oversize frame still to discard
        self._skipping_lf = False  # LF framing: inside an oversize frame, until its LF
        self._error: str | None = None

    @property
    def mode(self) -> str | None:
        """`octet` or `lf` once the first byte came, else None."""
        return self._mode

    @property
    def pending(self) -> bool:
        """Whether a frame is begun and not finished (its bytes held or being skipped)."""
        return bool(self._buffer or self._need >= 0 or self._skip or self._skipping_lf)

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (at most max_frame plus a prefix)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> Framed:
        """Take the next bytes of the stream; return the frames they complete."""
        out = Framed()
        if self._error is not None:
            out.error = self._error
            return out
        if not data:
            return out
        if self._mode is None:
            self._mode = "octet" if data[:1].isdigit() else "lf"
        if self._mode == "octet":
            self._octets(data, out)
        else:
            self._lines(data, out)
        if out.error is not None:
            self._error = out.error
            self._buffer.clear()
        return out

    def close(self) -> Framed:
        """The stream ended: a frame begun and not finished is dropped (`truncated_frame`);
        only it is lost."""
        out = Framed()
        # An oversize frame being skipped was counted when it began.
        if self._error is None and (self._buffer.strip(b"\r\n") or self._need >= 0):
            out.drop("truncated_frame")
        self._buffer.clear()
        self._need, self._skip, self._skipping_lf = -1, 0, False
        return out

    def _octets(self, data: bytes, out: Framed) -> None:
        view = memoryview(data)
        position, size = 0, len(data)
        buffer = self._buffer
        while position < size:
            if self._skip:
                taken = min(self._skip, size - position)
                self._skip -= taken
                position += taken
                continue
            if self._need < 0:
                # Reading the length prefix: digits, then one space.
                space = data.find(b" ", position, position + MAX_PREFIX + 1 - len(buffer))
                if space < 0:
                    buffer += view[position:]
                    if len(buffer) > MAX_PREFIX or not buffer.isdigit():
                        out.error = "bad_length"
                    return
                buffer += view[position:space]
                position = space + 1
                if (not buffer.isdigit() or buffer[:1] == b"0" or len(buffer) > MAX_PREFIX):
                    out.error = "bad_length"
                    return
                length = int(buffer)
                buffer.clear()
                if length > self._max_frame:
                    out.drop("oversize_frame")
                    self._skip = length
                else:
                    self._need = length
                continue
            taken = min(self._need - len(buffer), size - position)
            buffer += view[position:position + taken]
            position += taken
            if len(buffer) == self._need:
                out.frames.append(bytes(buffer))
                buffer.clear()
                self._need = -1

    def _lines(self, data: bytes, out: Framed) -> None:
        position, size = 0, len(data)
        buffer = self._buffer
        limit = self._max_frame
        while position < size:
            end = data.find(b"\n", position)
            if end < 0:
                if not self._skipping_lf:
                    buffer += data[position:]
                    if len(buffer) > limit + 1:  # one byte for a CR before the LF
                        out.drop("oversize_frame")
                        buffer.clear()
                        self._skipping_lf = True
                return
            if self._skipping_lf:
                self._skipping_lf = False
            else:
                buffer += data[position:end]
                if buffer[-1:] == b"\r":
                    del buffer[-1:]
                if len(buffer) > limit:
                    out.drop("oversize_frame")
                elif buffer:
                    out.frames.append(bytes(buffer))
            buffer.clear()
            position = end + 1
