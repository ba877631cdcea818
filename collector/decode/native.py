"""The native format (docs/PROTOCOL.md): authenticated, batched, with loss accounting.

Checks run cheapest first, and nothing about a stream changes until a datagram has passed
all of them, so that a forged, damaged, replayed or stale datagram cannot disturb the
stream it claims to belong to.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from collector.decode.native_stream import StreamTracker
from collector.decode.native_wire import (
    HEADER,
    HEADER_SIZE,
    PLAIN_HEAD,
    TAG_SIZE,
    VERSION,
    NativeKey,
    StreamCipher,
    decode_payload,
)
from collector.decode.result import Decoded, Dropped, Lines
from collector.decode.text import decode_lines

_MIN_DATAGRAM = HEADER_SIZE + PLAIN_HEAD.size + 2 + TAG_SIZE


def lost_marker(count: int, source: str) -> str:
    """The line the collector stores where a stream lost lines on the way."""
    return f"-- {count} line{'s' if count != 1 else ''} lost from {source} --"


def dropped_marker(count: int, source: str) -> str:
    """The line stored where the shipper itself dropped lines (its queue was full)."""
    return f"-- {count} line{'s' if count != 1 else ''} dropped by the shipper on {source} --"


class _Stream:
    __slots__ = ("cipher", "tracker")

    def __init__(self, cipher: StreamCipher, tracker: StreamTracker) -> None:
        self.cipher = cipher
        self.tracker = tracker


class NativeDecoder:
    """Decodes native datagrams under any of several keys (by key id, for rotation)."""

    format = "native"

    def __init__(self, keys: Sequence[NativeKey], *, max_skew: float = 300.0,
                 replay_window: int = 65536, reorder_wait: float = 1.0,
                 max_streams: int = 4096, source: str = "uwsgi") -> None:
        if not keys:
            raise ValueError("NativeDecoder needs at least one key")
        self._keys = {key.key_id: key for key in keys}
        self._max_skew = max_skew
        self._window = replay_window
        self._wait = reorder_wait
        self._max_streams = max_streams
        self._source = source
        self._streams: OrderedDict[tuple[int, int], _Stream] = OrderedDict()

    @property
    def streams(self) -> int:
        """Streams currently tracked."""
        return len(self._streams)

    def decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """Check, decrypt and account for one datagram."""
        size = len(data)
        if size < _MIN_DATAGRAM:
            return Dropped("truncated")
        version, reserved, length, key_id, stream_id, seq, micros = HEADER.unpack_from(data)
        if version != VERSION or reserved:
            return Dropped("bad_version")
        if size < length:
            return Dropped("truncated")
        if size > length:
            return Dropped("bad_length")
        key = self._keys.get(key_id)
        if key is None:
            return Dropped("unknown_key")
        ident = (key_id, stream_id)
        stream = self._streams.get(ident)
        cipher = stream.cipher if stream is not None else StreamCipher(key, stream_id)
        plain = cipher.open(data[:HEADER_SIZE], seq, data[HEADER_SIZE:])
        if plain is None:
            return Dropped("bad_tag")
        emitted = micros / 1e6
        if emitted < now - self._max_skew:
            return Dropped("stale_timestamp")
        if emitted > now + self._max_skew:
            return Dropped("future_timestamp")
        payload = decode_payload(plain)
        if payload is None:
            return Dropped("bad_record")
        if stream is None:
            tracker = StreamTracker(seq, self._window, self._wait, payload.dropped_total)
        else:
            tracker = stream.tracker
            verdict = tracker.check(seq)
            if verdict is not None:
                return Dropped(verdict)
        part = payload.part
        if part is not None and not tracker.check_part(seq, payload.first_line, part):
            return Dropped("bad_record")
        if stream is None:
            self._remember(ident, _Stream(cipher, tracker))
        else:
            self._streams.move_to_end(ident)
        raws = payload.lines
        lost = 0
        if part is not None:
            whole, lost = tracker.add_part(seq, payload.first_line, part)
            raws = [whole] if whole is not None else []
        lost += tracker.accept(seq, payload.first_line, payload.lines_ended, now)
        dropped = tracker.note_dropped(payload.dropped_total)
        lines, escaped = decode_lines(raws)
        app = payload.app.decode("utf-8", "replace") or None
        source = payload.source.decode("utf-8", "replace") or None
        name = source or self._source
        markers: tuple[str, ...] = ()
        if lost:
            markers += (lost_marker(lost, name),)
        if dropped:
            markers += (dropped_marker(dropped, name),)
        return Lines(lines, app, source, emitted, escaped, markers, lost + dropped)

    def _remember(self, ident: tuple[int, int], stream: _Stream) -> None:
        # Forgetting the least recently heard stream bounds memory; a replay of its old
        # datagrams is then still bounded by the timestamp window.
        if len(self._streams) >= self._max_streams:
            self._streams.popitem(last=False)
        self._streams[ident] = stream
