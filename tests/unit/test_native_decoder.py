"""The native decoder, fed bytes: attacks and damage rejected under their own reasons
without disturbing the stream, loss counted once and only when final, long lines joined,
and fuzzing (random bytes, flipped bits, truncation)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode.native import NativeDecoder
from collector.decode.result import Decoded, Dropped, Lines
from logwire.errors import WireError
from logwire.native import (
    HEADER_SIZE,
    NativeKey,
    generate_key,
    make_key,
    parse_key_token,
)
from shipper.batcher import Batcher
from shipper.encoder import StreamEncoder

NOW = 1_800_000_000.0
KEY = make_key("aes256gcm", bytes(range(32)))
OTHER = make_key("chacha20poly1305", bytes(range(1, 33)))


def stream(key: NativeKey = KEY, budget: int = 1472) -> StreamEncoder:
    """A fresh sending stream."""
    return StreamEncoder(key, budget)


def one_datagram(encoder: StreamEncoder, lines: list[str], now: float = NOW) -> bytes:
    """Exactly one datagram holding `lines`."""
    datagrams = encoder_take(encoder, lines, now)
    assert len(datagrams) == 1
    return datagrams[0]


def encoder_take(encoder: StreamEncoder, lines: list[str], now: float = NOW) -> list[bytes]:
    """The datagrams a batcher seals for `lines` at once."""
    batcher = Batcher(encoder)
    for line in lines:
        batcher.add(b"shop", b"web.1", line.encode(), now)
    return batcher.take(now, force=True)


def decoder() -> NativeDecoder:
    """A decoder holding both test keys."""
    return NativeDecoder([KEY, OTHER], max_skew=300.0, replay_window=1024)


def lines_of(result: Decoded) -> list[str]:
    """The lines of an accepted datagram (fails on a drop)."""
    assert isinstance(result, Lines), result
    return result.lines


def test_round_trip_names_and_time() -> None:
    """Lines come back with app, source and the send time."""
    datagram = one_datagram(stream(), ["a", "b", "ünïcode"])
    result = decoder().decode(datagram, "10.0.0.1", NOW + 1)
    assert isinstance(result, Lines)
    assert result.lines == ["a", "b", "ünïcode"]
    assert (result.app, result.source, result.emitted_at, result.lost) == (
        "shop", "web.1", NOW, 0)


def test_both_algorithms_and_several_keys_at_once() -> None:
    """A listener with two keys (a rotation) takes datagrams under either."""
    dec = decoder()
    assert lines_of(dec.decode(one_datagram(stream(KEY), ["k1"]), "h", NOW)) == ["k1"]
    assert lines_of(dec.decode(one_datagram(stream(OTHER), ["k2"]), "h", NOW)) == ["k2"]


def test_each_attack_has_its_own_reason_and_the_stream_goes_on() -> None:
    """Unknown key, replay, stale, future, truncated, bad version and bad tag are each
    counted under their own reason; the genuine datagrams around them all get through and
    no loss is reported."""
    encoder = stream()
    good = [one_datagram(encoder, [f"line {i}"]) for i in range(8)]
    dec = decoder()
    stranger = one_datagram(StreamEncoder(generate_key(), 1472), ["intruder"])
    old = one_datagram(StreamEncoder(KEY, 1472), ["old"], now=NOW - 301)
    ahead = one_datagram(StreamEncoder(KEY, 1472), ["ahead"], now=NOW + 301)
    flipped = bytearray(good[5])
    flipped[HEADER_SIZE + 3] ^= 0x10
    version = bytearray(good[5])
    version[0] = 2
    attacks = [
        (stranger, "unknown_key"),
        (good[0], "replay"),
        (old, "stale_timestamp"),
        (ahead, "future_timestamp"),
        (good[5][:-1], "truncated"),
        (good[5][:40], "truncated"),
        (good[5] + b"x", "bad_length"),
        (bytes(version), "bad_version"),
        (bytes(flipped), "bad_tag"),
    ]
    seen: list[str] = []
    reasons: list[str] = []
    for index, datagram in enumerate(good):
        result = dec.decode(datagram, "h", NOW)
        assert isinstance(result, Lines)
        assert (result.lost, result.markers) == (0, ())
        seen += result.lines
        if index < len(attacks):
            bad = dec.decode(attacks[index][0], "h", NOW)
            assert isinstance(bad, Dropped)
            reasons.append(bad.reason)
    assert seen == [f"line {i}" for i in range(8)]
    assert reasons == [reason for _, reason in attacks][:len(reasons)]
    for datagram, reason in attacks[len(reasons):]:
        assert dec.decode(datagram, "h", NOW) == Dropped(reason)
    # The damaged copies of datagram 5 did not consume its sequence number.
    assert dec.decode(good[5], "h", NOW) == Dropped("replay")


def test_a_flipped_bit_anywhere_is_rejected() -> None:
    """Every single-bit change of a datagram is dropped; past the key id it is the tag
    that catches it."""
    datagram = one_datagram(stream(), ["the quick brown fox"])
    dec = decoder()
    for bit in range(len(datagram) * 8):
        damaged = bytearray(datagram)
        damaged[bit // 8] ^= 1 << (bit % 8)
        result = dec.decode(bytes(damaged), "h", NOW)
        assert isinstance(result, Dropped), bit
        byte = bit // 8
        if byte < 2:
            assert result.reason == "bad_version"
        elif byte < 4:
            assert result.reason in {"truncated", "bad_length"}
        elif byte < 8:
            assert result.reason == "unknown_key"
        else:
            assert result.reason == "bad_tag"
    assert lines_of(dec.decode(datagram, "h", NOW)) == ["the quick brown fox"]


def test_a_gap_is_counted_in_lines_once_final() -> None:
    """A lost datagram of three lines is reported as 3 lines lost, once its successors
    have waited a second, with a marker before the lines that revealed it; the lost
    datagram arriving later is dropped as late."""
    encoder = stream()
    first = one_datagram(encoder, ["a"])
    lost = one_datagram(encoder, ["b", "c", "d"])
    third = one_datagram(encoder, ["e"])
    fourth = one_datagram(encoder, ["f"])
    dec = decoder()
    assert lines_of(dec.decode(first, "h", NOW)) == ["a"]
    result = dec.decode(third, "h", NOW + 0.1)
    assert isinstance(result, Lines)
    assert (result.lines, result.lost) == (["e"], 0)
    result = dec.decode(fourth, "h", NOW + 1.2)
    assert isinstance(result, Lines)
    assert result.lines == ["f"]
    assert result.lost == 3
    assert result.markers == ("-- 3 lines lost from web.1 --",)
    assert dec.decode(lost, "h", NOW + 1.3) == Dropped("late")


def test_reordering_within_the_wait_loses_nothing() -> None:
    """Datagrams that arrive out of order but in time are all delivered, none counted."""
    encoder = stream()
    datagrams = [one_datagram(encoder, [f"l{i}"]) for i in range(20)]
    order = list(range(20))
    random.Random(4).shuffle(order)
    dec = decoder()
    got: list[str] = []
    for step, index in enumerate(order):
        result = dec.decode(datagrams[index], "h", NOW + step * 0.01)
        assert isinstance(result, Lines)
        assert result.lost == 0
        got += result.lines
    assert sorted(got) == sorted(f"l{i}" for i in range(20))
    later = one_datagram(encoder, ["after"])
    result = dec.decode(later, "h", NOW + 5)
    assert isinstance(result, Lines)
    assert result.lost == 0


def test_the_window_settles_gaps_without_waiting() -> None:
    """A stream that moves `replay-window` datagrams past a gap settles it at once."""
    encoder = stream()
    datagrams = [one_datagram(encoder, [f"l{i}"]) for i in range(12)]
    dec = NativeDecoder([KEY], replay_window=4)
    dec.decode(datagrams[0], "h", NOW)
    lost = 0
    for datagram in datagrams[3:]:
        result = dec.decode(datagram, "h", NOW)
        assert isinstance(result, Lines)
        lost += result.lost
    assert lost == 2
    assert dec.decode(datagrams[1], "h", NOW) == Dropped("late")


def test_sender_drops_become_a_marker() -> None:
    """The dropped total the sidecar carries becomes lost lines and a marker, once."""
    encoder = stream()
    batcher = Batcher(encoder, max_lines=3)
    for i in range(10):
        batcher.add(b"shop", b"web.1", f"l{i}".encode(), NOW)
    (datagram,) = batcher.take(NOW, force=True)
    dec = decoder()
    result = dec.decode(datagram, "h", NOW)
    assert isinstance(result, Lines)
    assert result.lines == ["l7", "l8", "l9"]
    assert result.lost == 7
    assert result.markers == ("-- 7 lines dropped by the shipper on web.1 --",)
    again = dec.decode(one_datagram(encoder, ["next"]), "h", NOW)
    assert isinstance(again, Lines)
    assert (again.lost, again.markers) == (0, ())


def long_line_datagrams(encoder: StreamEncoder) -> tuple[str, list[bytes]]:
    """A line that needs four datagrams, and those datagrams."""
    line = "".join(f"{i:05d}" for i in range(1000))
    datagrams = encoder_take(encoder, [line])
    assert len(datagrams) == 4
    assert all(len(d) <= 1472 for d in datagrams)
    return line, datagrams


def test_a_long_line_is_split_and_joined_in_any_order() -> None:
    """A 5000-byte line crosses four datagrams and comes back whole, even reordered."""
    line, datagrams = long_line_datagrams(stream())
    dec = decoder()
    got: list[str] = []
    for datagram in (datagrams[2], datagrams[0], datagrams[3], datagrams[1]):
        got += lines_of(dec.decode(datagram, "h", NOW))
    assert got == [line]


@pytest.mark.parametrize("missing", [0, 1, 3])
def test_a_long_line_missing_a_part_counts_as_one_lost_line(missing: int) -> None:
    """Whichever part is lost, the line is counted lost exactly once."""
    encoder = stream()
    before = one_datagram(encoder, ["before"])
    _, datagrams = long_line_datagrams(encoder)
    after = [one_datagram(encoder, [f"after {i}"]) for i in range(2)]
    dec = decoder()
    dec.decode(before, "h", NOW)
    lost = 0
    for index, datagram in enumerate(datagrams):
        if index != missing:
            result = dec.decode(datagram, "h", NOW)
            assert isinstance(result, Lines)
            assert result.lines == []
            lost += result.lost
    # The gap is final once the datagrams after it have waited (the second is needed
    # when the last part is the one missing: only `after 0` is above that gap).
    for step, datagram in enumerate(after, start=1):
        result = dec.decode(datagram, "h", NOW + 2 * step)
        assert isinstance(result, Lines)
        assert result.lines == [f"after {step - 1}"]
        lost += result.lost
    assert lost == 1


def test_joining_a_stream_part_way_counts_nothing_before_it() -> None:
    """A collector that first hears a stream at datagram 100 reports no loss for 0..99,
    still takes a slightly older datagram that was only reordered, and counts gaps after."""
    encoder = stream()
    datagrams = [one_datagram(encoder, [f"l{i}"]) for i in range(110)]
    dec = decoder()
    assert lines_of(dec.decode(datagrams[100], "h", NOW)) == ["l100"]
    assert lines_of(dec.decode(datagrams[99], "h", NOW)) == ["l99"]
    result = dec.decode(datagrams[101], "h", NOW + 2)
    assert isinstance(result, Lines)
    assert result.lost == 0
    result = dec.decode(datagrams[103], "h", NOW + 2)
    result = dec.decode(datagrams[104], "h", NOW + 4)
    assert isinstance(result, Lines)
    assert result.lost == 1
    assert result.markers == ("-- 1 line lost from web.1 --",)


def test_streams_are_bounded() -> None:
    """Past `max_streams`, the least recently heard stream is forgotten, and counted."""
    dec = NativeDecoder([KEY], max_streams=3)
    for _ in range(5):
        assert isinstance(dec.decode(one_datagram(stream(), ["x"]), "h", NOW), Lines)
    assert dec.streams == 3
    assert dec.evicted["stream"] == 2


def test_key_tokens() -> None:
    """A token names its key id; damage anywhere in it is caught."""
    key = generate_key("chacha20poly1305")
    assert parse_key_token(key.token) == key
    assert parse_key_token(f"  {key.token}\n") == key
    assert key.token.split(".")[2] == f"{key.key_id:08x}"
    assert "secret" not in repr(key)
    assert key.token.split(".")[3] not in repr(key)
    prefix, algo, key_id, encoded = key.token.split(".")
    swapped = "A" if encoded[5] != "A" else "B"
    for bad in ("", "lsk1.aes256gcm.00000000", f"lsk2.{algo}.{key_id}.{encoded}",
                f"{prefix}.aes128gcm.{key_id}.{encoded}", f"{prefix}.{algo}.zz.{encoded}",
                f"{prefix}.{algo}.{key_id}.{encoded[:-2]}",
                f"{prefix}.{algo}.{key_id}.{encoded[:5]}{swapped}{encoded[6:]}",
                f"{prefix}.aes256gcm.{key_id}.{encoded}"):
        with pytest.raises(WireError):
            parse_key_token(bad)


@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(data: bytes) -> None:
    """Random bytes never raise and are never accepted."""
    assert isinstance(decoder().decode(data, "h", NOW), Dropped)


@given(st.data())
@settings(max_examples=200)
def test_fuzz_damaged_datagrams(data: st.DataObject) -> None:
    """A genuine datagram with random bits flipped, or cut short, is dropped; the
    untouched one is still accepted afterwards."""
    encoder = stream()
    lines = data.draw(st.lists(st.text(min_size=1, max_size=300).filter(
        lambda s: "\n" not in s and "\r" not in s), min_size=1, max_size=4))
    datagram = encoder_take(encoder, lines)[0]
    flips = data.draw(st.lists(st.integers(0, len(datagram) * 8 - 1), min_size=1,
                               max_size=8, unique=True))
    damaged = bytearray(datagram)
    for bit in flips:
        damaged[bit // 8] ^= 1 << (bit % 8)
    cut = data.draw(st.integers(0, len(datagram) - 1))
    dec = decoder()
    assert isinstance(dec.decode(bytes(damaged), "h", NOW), Dropped)
    assert isinstance(dec.decode(datagram[:cut], "h", NOW), Dropped)
    assert isinstance(dec.decode(datagram, "h", NOW), Lines)


def test_a_restarted_collector_does_not_count_its_predecessors_lines() -> None:
    """Hearing a young stream first at datagram 5 (0..4 went to the collector before a
    restart) reports no loss for them, even once the gap is old."""
    encoder = stream()
    datagrams = [one_datagram(encoder, [f"l{i}"]) for i in range(8)]
    dec = decoder()
    lost = 0
    for step, datagram in enumerate(datagrams[5:]):
        result = dec.decode(datagram, "h", NOW + 2 * step)
        assert isinstance(result, Lines)
        lost += result.lost
    assert lost == 0


def test_a_restarted_collector_does_not_report_drops_again() -> None:
    """The sidecar's dropped total is cumulative: a collector that restarts (a fresh
    decoder) mid-stream reports only the drops after it joined, not those its predecessor
    already stored a marker for; a stream heard from its first datagram reports all."""
    encoder = stream()
    first = decoder()
    encoder.dropped_total = 40
    result = first.decode(one_datagram(encoder, ["a"]), "h", NOW)
    assert isinstance(result, Lines)
    assert result.markers == ("-- 40 lines dropped by the shipper on web.1 --",)
    restarted = decoder()
    result = restarted.decode(one_datagram(encoder, ["b"]), "h", NOW)
    assert isinstance(result, Lines)
    assert (result.lines, result.lost, result.markers) == (["b"], 0, ())
    encoder.dropped_total = 45
    result = restarted.decode(one_datagram(encoder, ["c"]), "h", NOW)
    assert isinstance(result, Lines)
    assert result.lost == 5
    assert result.markers == ("-- 5 lines dropped by the shipper on web.1 --",)


def test_a_forgotten_stream_does_not_report_drops_again() -> None:
    """A stream forgotten to make room (max_streams) and heard again is joined part way:
    its earlier drops are not counted a second time."""
    dec = NativeDecoder([KEY], max_streams=1)
    encoder = stream()
    encoder.dropped_total = 7
    assert lines_of(dec.decode(one_datagram(encoder, ["a"]), "h", NOW)) == ["a"]
    assert isinstance(dec.decode(one_datagram(stream(), ["other"]), "h", NOW), Lines)
    result = dec.decode(one_datagram(encoder, ["b"]), "h", NOW)
    assert isinstance(result, Lines)
    assert (result.lost, result.markers) == (0, ())
