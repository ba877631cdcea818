"""The native format (docs/PROTOCOL.md): authenticated, batched, with loss accounting.

Checks run cheapest first, and nothing about a stream changes until a datagram has passed
all of them, so that a forged, damaged, replayed or stale datagram cannot disturb the
stream it claims to belong to.

Everything a sender controls is bounded, and what is given up to stay within a bound is
counted in `evicted` by reason: streams (`stream`: the least recently heard is
forgotten), datagrams waiting above a gap per stream (`stream_pending`) and over all
streams (`pending`: the least recently heard stream holding some gives up its lowest
gap), long lines being joined per stream (`stream_partials`) and their bytes over all
streams (`partial_bytes`). A gap or line given up is counted lost like any other.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence

from collector.decode.native_stream import StreamTracker
from collector.decode.result import Decoded, Dropped, Lines
from collector.decode.text import decode_lines
from logwire.native import (
    HEADER,
    HEADER_SIZE,
    PLAIN_HEAD,
    TAG_SIZE,
    VERSION,
    NativeKey,
    StreamCipher,
    decode_payload,
)

_MIN_DATAGRAM = HEADER_SIZE + PLAIN_HEAD.size + 2 + TAG_SIZE

Ident = tuple[int, int]  # (key id, stream id)

# Bounds on what senders make the collector hold (listener keys max-streams, max-pending,
# max-stream-pending; docs/PROTOCOL.md). Measured, a stream costs about 0.8 kB and a pending
# datagram 250 bytes: some 3 MB and 16 MB at these defaults, and at most 16 MiB of parts.
DEFAULT_MAX_STREAMS = 4096
DEFAULT_MAX_PENDING = 65536
DEFAULT_MAX_STREAM_PENDING = 4096
DEFAULT_MAX_PARTIAL_BYTES = 16 << 20


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
                 max_streams: int = DEFAULT_MAX_STREAMS,
                 max_pending: int = DEFAULT_MAX_PENDING,
                 max_stream_pending: int = DEFAULT_MAX_STREAM_PENDING,
                 max_partial_bytes: int = DEFAULT_MAX_PARTIAL_BYTES,
                 source: str = "uwsgi") -> None:
        if not keys:
            raise ValueError("NativeDecoder needs at least one key")
        self._keys = {key.key_id: key for key in keys}
        self._max_skew = max_skew
        self._window = replay_window
        self._wait = reorder_wait
        self._max_streams = max(1, max_streams)
        self._max_pending = max(1, max_pending)
        self._max_stream_pending = max(1, max_stream_pending)
        self._max_partial_bytes = max(0, max_partial_bytes)
        self._source = source
        self._streams: OrderedDict[Ident, _Stream] = OrderedDict()
        # The streams holding pending datagrams, and those holding parts, least recently
        # heard first: where to give something up when a total is over its bound.
        self._with_pending: OrderedDict[Ident, None] = OrderedDict()
        self._with_partials: OrderedDict[Ident, None] = OrderedDict()
        self.pending = 0
        self.partial_bytes = 0
        self.evicted: Counter[str] = Counter()

    @property
    def streams(self) -> int:
        """Streams currently tracked."""
        return len(self._streams)

    def held(self) -> dict[str, int]:
        """What senders make this decoder hold now, each within its bound."""
        return {"streams": len(self._streams), "pending_datagrams": self.pending,
                "partial_bytes": self.partial_bytes}

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
            tracker = StreamTracker(seq, self._window, self._wait, payload.dropped_total,
                                    max_pending=self._max_stream_pending,
                                    evicted=self.evicted)
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
        held = (len(tracker.pending), tracker.partial_bytes)
        if part is not None:
            whole, lost = tracker.add_part(seq, payload.first_line, part)
            raws = [whole] if whole is not None else []
        lost += tracker.accept(seq, payload.first_line, payload.lines_ended, now)
        self._account(ident, tracker, held)
        if self.pending > self._max_pending or self.partial_bytes > self._max_partial_bytes:
            self._shed()
            lost += tracker.owed
            tracker.owed = 0
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

    def _remember(self, ident: Ident, stream: _Stream) -> None:
        # Forgetting the least recently heard stream bounds memory; a replay of its old
        # datagrams is then still bounded by the timestamp window.
        if len(self._streams) >= self._max_streams:
            old, forgotten = self._streams.popitem(last=False)
            self.evicted["stream"] += 1
            self.pending -= len(forgotten.tracker.pending)
            self.partial_bytes -= forgotten.tracker.partial_bytes
            self._with_pending.pop(old, None)
            self._with_partials.pop(old, None)
        self._streams[ident] = stream

    def _account(self, ident: Ident, tracker: StreamTracker, held: tuple[int, int],
                 heard: bool = True) -> None:
        """Update the totals by what `tracker` holds now against `held` before; a stream
        just `heard` becomes the most recently heard holder."""
        self.pending += len(tracker.pending) - held[0]
        self.partial_bytes += tracker.partial_bytes - held[1]
        for holders, holding in ((self._with_pending, bool(tracker.pending)),
                                 (self._with_partials, bool(tracker.partials))):
            if not holding:
                holders.pop(ident, None)
            elif heard:
                holders[ident] = None
                holders.move_to_end(ident)

    def _shed(self) -> None:
        """Give up gaps and long lines of the least recently heard streams until both
        totals are within their bounds; the lines lost are reported by each stream."""
        self._shed_from(self._with_pending, "pending", StreamTracker.give_up_gap,
                        lambda: self.pending > self._max_pending)
        self._shed_from(self._with_partials, "partial_bytes", StreamTracker.give_up_partial,
                        lambda: self.partial_bytes > self._max_partial_bytes)

    def _shed_from(self, holders: OrderedDict[Ident, None], reason: str,
                   give_up: Callable[[StreamTracker], int], over: Callable[[], bool]) -> None:
        while over() and holders:
            ident = next(iter(holders))
            tracker = self._streams[ident].tracker
            held = (len(tracker.pending), tracker.partial_bytes)
            tracker.owed += give_up(tracker)
            self.evicted[reason] += 1
            self._account(ident, tracker, held, heard=False)
