"""What senders make the native decoder hold is bounded: streams, datagrams waiting above
a gap (per stream and in total), long lines being joined; what is given up is counted by
reason and its lines are counted lost, never silently. Fed bytes, no sockets."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest

from collector.config.load import load_config
from collector.decode.native import NativeDecoder
from collector.decode.result import Dropped, Lines
from collector.errors import ConfigError, Location
from collector.listen.decoders import make_decoder
from collector.listen.stats import OTHER, ListenerStats
from logwire.native import make_key
from shipper.encoder import StreamEncoder

NOW = 1_800_000_000.0
MICROS = int(NOW * 1e6)
KEY = make_key("aes256gcm", bytes(range(32)))


def seal(encoder: StreamEncoder, line: str, source: bytes = b"web.1") -> bytes:
    """One datagram of one line."""
    return encoder.seal_lines(b"shop", source, [line.encode()], MICROS)


def with_gaps(encoder: StreamEncoder, count: int, source: bytes = b"web.1") -> list[bytes]:
    """Datagram 0, then every second one of the next 2 x `count` (the others never
    sent): each sent datagram after the first waits above a gap."""
    made = [seal(encoder, f"l{i}", source) for i in range(2 * count + 1)]
    return [made[0], *made[2::2]]


def lost(result: object) -> int:
    """The lines an accepted datagram reports lost."""
    assert isinstance(result, Lines), result
    return result.lost


def test_a_stream_holds_at_most_max_stream_pending_and_counts_what_it_gives_up() -> None:
    """A sender that leaves a gap before every datagram cannot make its stream hold more
    than max-stream-pending of them: the lowest gap is given up on, counted lost at once
    and as a `stream_pending` eviction, and a datagram of a given-up gap is `late`."""
    dec = NativeDecoder([KEY], max_stream_pending=8, max_pending=1000)
    encoder = StreamEncoder(KEY, 1472)
    made = [seal(encoder, f"l{i}") for i in range(81)]
    total = 0
    for datagram in [made[0], *made[2::2]]:
        total += lost(dec.decode(datagram, "h", NOW))
        assert dec.pending <= 8
    assert dec.evicted["stream_pending"] == 40 - 8
    assert total == 40 - 8
    assert dec.decode(made[61], "h", NOW) == Dropped("late")
    # The gaps still pending settle as usual once waited for.
    assert lost(dec.decode(seal(encoder, "later"), "h", NOW + 2)) == 8


def test_a_flood_of_streams_stays_at_every_bound() -> None:
    """Many distinct streams, each leaving gaps, from many sources: the streams tracked,
    the datagrams held over all of them and per stream stay at their bounds, and each
    kind of eviction is counted."""
    dec = NativeDecoder([KEY], max_streams=50, max_pending=200, max_stream_pending=10)
    for n in range(300):
        for datagram in with_gaps(StreamEncoder(KEY, 1472), 12, f"web.{n}".encode()):
            assert isinstance(dec.decode(datagram, "h", NOW), Lines)
            assert dec.streams <= 50
            assert dec.pending <= 200
    assert dec.held()["streams"] == 50
    assert dec.held()["pending_datagrams"] == 200
    assert dec.evicted["stream"] == 250
    assert dec.evicted["stream_pending"] == 300 * 2
    assert dec.evicted["pending"] > 0


def test_a_gap_given_up_for_the_total_is_reported_by_its_own_stream() -> None:
    """When the listener's total is over its bound, the least recently heard stream
    gives up its gap; the lost lines come with that stream's next datagram, under its own
    source, not with the datagram that tipped the total."""
    dec = NativeDecoder([KEY], max_pending=4, max_stream_pending=100)
    quiet = StreamEncoder(KEY, 1472)
    for datagram in with_gaps(quiet, 3, b"quiet"):
        assert lost(dec.decode(datagram, "h", NOW)) == 0
    busy = StreamEncoder(KEY, 1472)
    results = [dec.decode(d, "h", NOW) for d in with_gaps(busy, 3, b"busy")]
    assert sum(lost(r) for r in results) == 0
    assert dec.pending <= 4
    assert dec.evicted["pending"] == 2
    result = dec.decode(seal(quiet, "back", b"quiet"), "h", NOW)
    assert isinstance(result, Lines)
    assert result.lost == 2
    assert result.markers == ("-- 2 lines lost from quiet --",)


def long_line(encoder: StreamEncoder, size: int) -> list[bytes]:
    """The PART datagrams of one line of `size` bytes."""
    return encoder.seal_long_line(b"shop", b"web.1", b"x" * size, MICROS)


def test_long_lines_being_joined_are_bounded_per_stream_and_in_bytes() -> None:
    """Long lines whose last part never comes: at most 16 per stream are held (the
    oldest given up, `stream_partials`), and their bytes over all streams stay under
    the bound (`partial_bytes`)."""
    dec = NativeDecoder([KEY], max_partial_bytes=200_000)
    for _ in range(20):
        encoder = StreamEncoder(KEY, 1472)
        for _ in range(20):
            parts = long_line(encoder, 10_000)
            for datagram in parts[:-1]:
                assert isinstance(dec.decode(datagram, "h", NOW), Lines)
                assert dec.partial_bytes <= 200_000
    assert dec.evicted["stream_partials"] > 0
    assert dec.evicted["partial_bytes"] > 0
    assert 0 < dec.held()["partial_bytes"] <= 200_000


def test_a_forgotten_stream_takes_its_holdings_off_the_totals() -> None:
    """Forgetting a stream (max-streams) frees what it held: the totals fall back."""
    dec = NativeDecoder([KEY], max_streams=1)
    for datagram in with_gaps(StreamEncoder(KEY, 1472), 5):
        dec.decode(datagram, "h", NOW)
    for datagram in long_line(StreamEncoder(KEY, 1472), 5000)[:2]:
        dec.decode(datagram, "h", NOW)
    assert dec.pending == 0
    assert dec.partial_bytes > 0
    dec.decode(seal(StreamEncoder(KEY, 1472), "third"), "h", NOW)
    assert (dec.pending, dec.partial_bytes, dec.streams) == (0, 0, 1)
    assert dec.evicted["stream"] == 2


def test_memory_levels_off_under_a_flood_of_streams_and_gaps() -> None:
    """A flood of messages leaving gaps, on long-lived streams and on a stream of new
    ones, each from its own source: once the bounds are reached the memory the decoder
    holds (traced allocations) stops growing."""
    dec = NativeDecoder([KEY], max_streams=100, max_pending=1000, max_stream_pending=50)
    lasting = [StreamEncoder(KEY, 1472) for _ in range(25)]
    born = 0

    def flood(rounds: int) -> int:
        nonlocal born
        for _ in range(rounds):
            for n, encoder in enumerate(lasting):
                seal(encoder, "never sent")
                dec.decode(seal(encoder, "x", f"old.{n}".encode()), "h", NOW)
            born += 1
            for datagram in with_gaps(StreamEncoder(KEY, 1472), 5, f"new.{born}".encode()):
                dec.decode(datagram, "h", NOW)
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        flood(120)
        warm = flood(120)
        later = flood(120)
    finally:
        tracemalloc.stop()
    assert dec.streams == 100
    assert dec.pending == 1000
    # Without the bounds this flood adds about 1.7 MB each 120 rounds.
    assert later - warm < 50_000, (warm, later)


def test_lost_line_series_are_bounded() -> None:
    """Senders name the (app, source) of lost lines: past the bound the lines are
    counted under _other, and the folding is counted."""
    stats = ListenerStats(max_lost_series=3)
    for n in range(10):
        stats.count_lost("shop", f"web.{n}", 2)
    stats.count_lost("shop", "web.0", 1)
    assert len(stats.lost) == 4
    assert stats.lost[OTHER] == 14
    assert stats.lost[("shop", "web.0")] == 3
    assert stats.evicted["lost_series"] == 7


def test_bounds_are_listener_keys(tmp_path: Path) -> None:
    """max-streams, max-pending and max-stream-pending set a native listener's bounds;
    a bad value, or one on another format, names its file, line and key."""
    path = tmp_path / "collector.ini"
    head = f"[listener:n]\nudp = :1\nformat = native\nkey = {KEY.token}\n"
    path.write_text(head + "max-streams = 2\nmax-pending = 30\nmax-stream-pending = 3\n")
    (listener,) = load_config(path, env={}).listeners
    assert (listener.max_streams, listener.max_pending, listener.max_stream_pending) == (
        2, 30, 3)
    dec = make_decoder(listener)
    assert isinstance(dec, NativeDecoder)
    for datagram in with_gaps(StreamEncoder(KEY, 1472), 5):
        dec.decode(datagram, "h", NOW)
    assert dec.pending == 3
    for _ in range(3):
        dec.decode(seal(StreamEncoder(KEY, 1472), "x"), "h", NOW)
    assert dec.streams == 2
    for text, line, key in ((head + "max-streams = 0\n", 5, "max-streams"),
                            ("[listener:s]\nudp = :1\nformat = socket\nmax-pending = 9\n", 4,
                             "max-pending")):
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_config(path, env={})
        assert caught.value.location == Location(str(path), line, key), caught.value
