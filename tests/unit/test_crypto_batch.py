"""The crypto decoder's batch path (collector.speedups.crypto_batch: libcrypto's CBC, key
choice, size checks and every check of crypto_open in one C call per batch) against the
pure path (the cipher of `cryptography`, the pure crypto_open, one datagram at a time
through the listener's per-datagram loop): same lines, same drops by reason and in the
same order, same decoder state, over valid, mutated, replayed and garbage datagrams under
all four algorithms and several senders.

Under COLLECTOR_PURE_PYTHON=1 both sides are pure; the comparison still runs.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from collector import speedups
from collector.config.model import ListenerConfig
from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.decode.result import Lines
from collector.listen.intake import Intake
from logwire.logcrypto import encrypt, frame
from tests.unit.test_crypto_compiled import (
    KEYS,
    MICROS,
    NOW,
    SKEW,
    PureDecoder,
    datagrams,
    keys,
    prefix_bound,
    same,
)

PEERS = ["10.0.0.1", "10.0.0.2", "::1", "h"]
MAX_DATAGRAM = 56


def config(max_datagram: int = MAX_DATAGRAM) -> ListenerConfig:
    """A listener's settings as Intake reads them (no rate limit: the batch path)."""
    return ListenerConfig("crypto", "127.0.0.1", 0, "crypto", "app", "src",
                          max_datagram=max_datagram)


def assert_same_state(got: CryptoDecoder, want: CryptoDecoder) -> None:
    """Replay set and order, prefix cache and per-sender keys alike."""
    assert got._seen == want._seen
    assert list(got._order) == list(want._order)
    assert got._prefixes == want._prefixes
    assert got._by_peer == want._by_peer


def assert_same_take(got: list[tuple[str, Lines]], want: list[tuple[str, Lines]]) -> None:
    """The same (host, Lines) in the same order, field types included."""
    assert [host for host, _ in got] == [host for host, _ in want]
    for (_, ours), (_, theirs) in zip(got, want, strict=True):
        same(ours, theirs)


def test_the_batch_path_serves_where_the_extension_is_built() -> None:
    """With the extension built (and not forced pure), every algorithm is decrypted by
    libcrypto (Blowfish through the legacy provider) and a listener's Intake takes whole
    batches; pure, the decoder says so and the per-datagram path serves."""
    decoder = CryptoDecoder(keys(), SKEW)
    if not speedups.COMPILED:
        assert not decoder.batched
        pytest.skip(f"pure path: {speedups.WHY_PURE}")
    assert speedups.crypto_batch is not None
    assert all(key._native is not None for key in decoder._keys)
    assert decoder.batched
    assert Intake(config(), decoder)._many is not None
    # A rate limit sits between the size check and the decoder: datagram by datagram.
    limited = ListenerConfig("c", "127.0.0.1", 0, "crypto", "a", "s", sender_rate=5.0)
    assert Intake(limited, CryptoDecoder(keys(), SKEW))._many is None


batch_items = st.tuples(datagrams(), st.sampled_from(PEERS), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(batch_items, min_size=1, max_size=12), min_size=1, max_size=5),
       st.sampled_from([0, 1, 3, 65536]), st.sampled_from([1, 2, 4096]),
       st.sampled_from([1, 2, 65536]))
def test_batches_match_the_pure_path_datagram_by_datagram(
        batches: list[list[tuple[bytes, str, bool]]], window: int, bound: int,
        max_senders: int) -> None:
    """Each batch through a listener's Intake: the batch path (one C call) and the pure
    decoder through the per-datagram loop give the same lines, the same drop counts, and
    leave the same replay window, prefix cache (evicted at `bound`) and per-sender keys
    (cleared at `max_senders`); replays of earlier datagrams, oversize ones and every key
    in one batch."""
    batched = CryptoDecoder(keys(), SKEW, window, max_senders)
    pure = PureDecoder(keys(), SKEW, window, max_senders)
    ours, theirs = Intake(config(), batched), Intake(config(), pure)
    assert theirs._many is None
    dropped_ours: Counter[str] = Counter()
    dropped_theirs: Counter[str] = Counter()
    sent: list[bytes] = []
    with prefix_bound(bound):
        for items in batches:
            batch = []
            for fresh, peer, replay in items:
                data = sent[len(fresh) % len(sent)] if replay and sent else fresh
                sent.append(data)
                batch.append((data, peer))
            assert_same_take(ours.take(batch, NOW, dropped_ours),
                             theirs.take(batch, NOW, dropped_theirs))
            assert dropped_ours == dropped_theirs
    assert_same_state(batched, pure)


@settings(max_examples=200, deadline=None)
@given(st.lists(batch_items, min_size=1, max_size=30), st.sampled_from([0, 4, 65536]))
def test_decode_many_reports_each_drop_in_order(items: list[tuple[bytes, str, bool]],
                                                window: int) -> None:
    """decode_many's drops, (reason, host, None) in batch order, are what `decode` says of
    each datagram one at a time on the pure path, `oversize` first."""
    batched = CryptoDecoder(keys(), SKEW, window)
    pure = PureDecoder(keys(), SKEW, window)
    batch = [(data, peer) for data, peer, _ in items]
    decoded, drops = batched.decode_many(batch, NOW, MAX_DATAGRAM)
    want_decoded: list[tuple[str, Lines]] = []
    want_drops: list[tuple[str, str, BaseException | None]] = []
    for data, peer in batch:
        if len(data) > MAX_DATAGRAM:
            want_drops.append(("oversize", peer, None))
            continue
        result = pure.decode(data, peer, NOW)
        if isinstance(result, Lines):
            want_decoded.append((peer, result))
        else:
            want_drops.append((result.reason, peer, None))
    assert_same_take(decoded, want_decoded)
    assert drops == want_drops
    assert_same_state(batched, pure)


def test_skew_edges_and_replays_in_one_batch() -> None:
    """Timestamps exactly at and one µs past either skew bound, then the same datagrams
    again: accepted, stale, future, then replays, in batch order."""
    edge = int(SKEW * 1e6)
    offsets = [-edge, -edge - 1, edge, edge + 1, 0]
    data = [encrypt(frame(b"at %d\n" % i, MICROS + off, b"shop/web.1"), "alpha",
                    "aes-256-cbc") for i, off in enumerate(offsets)]
    for decoder in (CryptoDecoder(keys(), SKEW), PureDecoder(keys(), SKEW)):
        decoded, drops = decoder.decode_many([(d, "p") for d in data * 2], NOW, 65507)
        assert [lines.lines for _, lines in decoded] == [["at 0"], ["at 2"], ["at 4"]]
        assert all((lines.app, lines.source) == ("shop", "web.1") for _, lines in decoded)
        assert [reason for reason, _, _ in drops] == [
            "stale_timestamp", "future_timestamp", "replay", "stale_timestamp", "replay",
            "future_timestamp", "replay"]


@pytest.mark.parametrize("bound", [1, 2])
def test_prefix_cache_eviction_inside_one_batch(bound: int) -> None:
    """Prefixes seen again after the cache was cleared in the same batch are looked up
    again, so the cache ends as the pure path's does, names right all along."""
    order = [b"a/w.1", b"a/w.1", b"b/w.2", b"a/w.1", b"c/w.3", b"a/w.1", b"b/w.2", b"a/w.1"]
    batch = [(encrypt(frame(b"n %d\n" % i, MICROS + i, prefix), "alpha", "aes-256-cbc"),
              "p") for i, prefix in enumerate(order)]
    results = []
    with prefix_bound(bound):
        for decoder in (CryptoDecoder(keys(), SKEW), PureDecoder(keys(), SKEW)):
            decoded, drops = decoder.decode_many(batch, NOW, 65507)
            assert drops == []
            assert [(lines.app, lines.source) for _, lines in decoded] == [
                tuple(prefix.decode().split("/")) for prefix in order]
            results.append(decoder)
    assert results[0]._prefixes == results[1]._prefixes


def test_mixed_keys_in_one_batch_keep_each_senders_key() -> None:
    """Four senders, one per key, interleaved in one batch: every line decoded with its
    key's app, and each sender's key remembered for the next batch."""
    batch = []
    for i in range(8):
        secret, algo, iv, _ = KEYS[i % 4]
        batch.append((encrypt(frame(b"line %d\n" % i, MICROS + i), secret, algo, iv),
                      f"10.0.0.{i % 4}"))
    for decoder in (CryptoDecoder(keys(), SKEW), PureDecoder(keys(), SKEW)):
        decoded, drops = decoder.decode_many(batch, NOW, 65507)
        assert drops == []
        assert [lines.lines for _, lines in decoded] == [[f"line {i}"] for i in range(8)]
        assert [lines.app for _, lines in decoded] == [KEYS[i % 4][3] for i in range(8)]
        assert decoder._by_peer == {"10.0.0.1": 1, "10.0.0.2": 2, "10.0.0.3": 3}


class BrokenPrefix(CryptoDecoder):
    """A decoder whose prefix lookup fails on one app's datagrams (a planted bug)."""

    def _prefix(self, body: bytes) -> tuple[str, str, int] | None:
        """Raise for `boom/`, else as usual."""
        if body.startswith(b"boom/"):
            raise RuntimeError("planted")
        return super()._prefix(body)


class PureBrokenPrefix(BrokenPrefix):
    """The same on the pure path."""

    _open = staticmethod(speedups._crypto_open_py)
    _batch = None


@pytest.mark.parametrize("decoder_class", [BrokenPrefix, PureBrokenPrefix])
def test_a_decoder_error_costs_its_datagram_only(decoder_class: type[CryptoDecoder]) -> None:
    """A datagram whose decoding raises is one `internal_error`, logged once with its
    traceback; the datagrams around it in the batch are decoded."""
    prefixes = [b"ok/web.1", b"boom/web.1", b"ok/web.1"]
    batch = [(encrypt(frame(b"n %d\n" % i, MICROS + i, prefix), "alpha", "aes-256-cbc"),
              "p") for i, prefix in enumerate(prefixes)]
    intake = Intake(config(65507), decoder_class(keys(), SKEW))
    dropped: Counter[str] = Counter()
    with capture_logs() as logs:
        decoded = intake.take(batch, NOW, dropped)
    assert [lines.lines for _, lines in decoded] == [["n 0"], ["n 2"]]
    assert dropped == {"internal_error": 1}
    failed = [entry for entry in logs if entry["event"] == "datagram_failed"]
    assert len(failed) == 1
    assert failed[0]["peer"] == "p"
    # The batch path hands the exception over; the per-datagram loop logs in its except.
    error = failed[0]["exc_info"]
    if error is not True:
        assert isinstance(error, RuntimeError)
        assert error.__traceback__ is not None


@pytest.fixture
def no_blowfish(monkeypatch: pytest.MonkeyPatch) -> None:
    """libcrypto as it is without the legacy provider: no Blowfish context."""
    make = speedups.crypto_cipher
    if make is None:
        pytest.skip("the extension has no libcrypto")

    def without_bf(algo: str, key: bytes, iv: bytes) -> object | None:
        """None for bf-cbc, else libcrypto's context."""
        return None if algo == "bf-cbc" else make(algo, key, iv)

    monkeypatch.setattr(speedups, "crypto_cipher", without_bf)


@pytest.mark.usefixtures("no_blowfish")
def test_an_algorithm_libcrypto_lacks_sends_the_decoder_down_the_pure_path() -> None:
    """One key libcrypto cannot take (Blowfish without the legacy provider): the decoder
    keeps the per-datagram path for all its keys, with the same results."""
    decoder = CryptoDecoder(keys(), SKEW)
    assert not decoder.batched
    assert CryptoDecoder([CryptoKey("alpha", "aes-256-cbc")], SKEW).batched
    batch = [(encrypt(frame(b"x %d\n" % i, MICROS + i), KEYS[i % 4][0], KEYS[i % 4][1],
                      KEYS[i % 4][2]), "p") for i in range(8)]
    decoded, drops = decoder.decode_many(batch, NOW, 65507)
    assert drops == []
    assert [lines.lines for _, lines in decoded] == [[f"x {i}"] for i in range(8)]


def test_no_secret_shows_in_a_context_or_an_error() -> None:
    """libcrypto's context is opaque (its repr names no key), and a batch that breaks in C
    says what is wrong, not with which key."""
    secret = "top-secret-key-material"
    key = CryptoKey(secret, "aes-256-cbc")
    assert secret not in repr(key._native)
    decoder = CryptoDecoder([key], SKEW)
    if not decoder.batched:
        pytest.skip(f"pure path: {speedups.WHY_PURE}")
    decoded, drops = decoder.decode_many([("not bytes", "p")], NOW, 65507)  # type: ignore[list-item]
    assert decoded == []
    assert [(reason, host) for reason, host, _ in drops] == [("internal_error", "p")]
    assert isinstance(drops[0][2], TypeError)
    assert secret not in str(drops[0][2])
