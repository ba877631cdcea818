"""The crypto decoder's compiled checks (collector.speedups.crypto_open) against the pure
reference, and the decoder as a whole against the all-Python decoder of 5ab9c9a
(tests/support/crypto_reference.py), over valid, mutated, replayed and garbage datagrams."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import speedups
from collector.decode import crypto
from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.decode.result import Decoded, Lines
from logwire.logcrypto import ALGORITHMS, derive_iv, derive_key, encrypt, frame
from tests.support import crypto_reference
from tests.support.crypto_reference import ReferenceDecoder

try:
    from collector import _speedups as compiled
except ImportError:  # the comparison with the compiled function is skipped
    compiled_module: ModuleType | None = None
else:
    compiled_module = compiled

NOW = 1_790_000_000.0
MICROS = int(NOW * 1e6)
SKEW = 300.0
# (secret, algo, iv, app): all four algorithms, two apps named by their key.
KEYS = [("alpha", "aes-256-cbc", None, "alpha"), ("beta", "aes-128-cbc", "xyz", None),
        ("gamma", "bf-cbc", None, "gamma"), ("delta", "aes-192-cbc", "iv-delta", None)]
PREFIXES = [None, b"shop/web.1", b"shop/web.2", b"api/worker.3", b"x/y", b"-bad/web.1",
            b"shop/", b"a/b@c", b"caf\xc3\xa9/web.1"]
# Around the skew bounds, where float rounding decides.
EDGES = [0, -int(SKEW * 1e6), -int(SKEW * 1e6) - 1, int(SKEW * 1e6), int(SKEW * 1e6) + 1,
         -int(SKEW * 1e6) + 1, int(SKEW * 1e6) - 1]


class PureDecoder(CryptoDecoder):
    """The decoder with collector.speedups' pure-Python checks, whatever is compiled."""

    _open = staticmethod(speedups._crypto_open_py)
    _batch = None


def keys() -> list[CryptoKey]:
    """A fresh set of the four keys (each decoder gets its own CBC contexts)."""
    return [CryptoKey(secret, algo, iv, app=app) for secret, algo, iv, app in KEYS]


def seal(plain: bytes, index: int) -> bytes:
    """Encrypt `plain` under key `index` without adding padding (whatever its end holds)."""
    secret, algo, iv, _ = KEYS[index]
    block = ALGORITHMS[algo].block
    plain = plain.ljust(-(-len(plain) // block) * block or block, b"\x01")
    enc = Cipher(ALGORITHMS[algo].make(derive_key(secret, algo)),
                 modes.CBC(derive_iv(iv, algo))).encryptor()
    return enc.update(plain) + enc.finalize()


@contextlib.contextmanager
def prefix_bound(bound: int) -> Iterator[None]:
    """Both decoders evict their prefix cache at `bound` entries for a while."""
    saved = crypto._MAX_PREFIXES, crypto_reference._MAX_PREFIXES
    crypto._MAX_PREFIXES = crypto_reference._MAX_PREFIXES = bound
    try:
        yield
    finally:
        crypto._MAX_PREFIXES, crypto_reference._MAX_PREFIXES = saved


lines_body = st.lists(st.sampled_from([b"GET / 200", b"", b"\r", b"a\0b", b"caf\xe9",
                                       b"caf\xc3\xa9", b"x y z", b"  ", b"\r\r"]),
                      max_size=5).map(b"\n".join)
bodies = st.one_of(lines_body, st.binary(max_size=40))


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    """One datagram: valid under some key, mutated, with a bad head, or garbage."""
    kind = draw(st.sampled_from(["valid", "valid", "valid", "mutated", "head", "unpadded",
                                 "garbage"]))
    index = draw(st.integers(0, len(KEYS) - 1))
    secret, algo, iv, _ = KEYS[index]
    if kind == "garbage":
        return draw(st.binary(max_size=70))
    if kind == "head":
        return encrypt(draw(st.binary(max_size=40)), secret, algo, iv)
    if kind == "unpadded":
        return seal(draw(st.binary(max_size=40)), index)
    micros = draw(st.one_of(st.sampled_from([MICROS + e for e in EDGES]),
                            st.integers(MICROS - 10**8, MICROS + 10**8),
                            st.integers(MICROS - 10**9, MICROS + 10**9),
                            st.integers(0, 10**20 - 1)))
    if draw(st.booleans()):
        plain = frame(draw(bodies), micros, draw(st.sampled_from(PREFIXES)))
    else:
        # Any bytes after a timestamp: NUL or a space first, prefixes of any shape.
        start = draw(st.sampled_from([b"", b"\0", b" ", b"a/b ", b"a/b \0", b"\n"]))
        plain = b"%d " % micros + start + draw(st.binary(max_size=30))
    data = encrypt(plain, secret, algo, iv)
    if kind == "mutated":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes((data[at] ^ draw(st.integers(1, 255)),)) + data[at + 1:]
        if draw(st.booleans()):
            data = data[:draw(st.integers(0, len(data)))]
    return data


def same(got: Decoded, want: Decoded) -> None:
    """Equal results, down to the types of the fields."""
    assert got == want
    if isinstance(want, Lines):
        assert isinstance(got, Lines)
        assert type(got.emitted_at) is type(want.emitted_at)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(datagrams(), st.sampled_from(["10.0.0.1", "10.0.0.2", "h"]),
                          st.booleans()), min_size=1, max_size=25),
       st.sampled_from([0, 1, 3, 65536]), st.sampled_from([1, 2, 4096]))
def test_decoder_matches_the_reference(stream: list[tuple[bytes, str, bool]], window: int,
                                       bound: int) -> None:
    """The decoder (compiled where built, and pure) returns what 5ab9c9a's all-Python
    decoder returns for every datagram of a stream, replays and prefix evictions included,
    and keeps the same replay and prefix state."""
    decoders = [CryptoDecoder(keys(), SKEW, window), PureDecoder(keys(), SKEW, window)]
    reference = ReferenceDecoder(keys(), SKEW, window)
    sent: list[bytes] = []
    with prefix_bound(bound):
        for fresh, peer, replay in stream:
            data = sent[len(fresh) % len(sent)] if replay and sent else fresh
            sent.append(data)
            want = reference.decode(data, peer, NOW)
            for decoder in decoders:
                same(decoder.decode(data, peer, NOW), want)
    for decoder in decoders:
        assert decoder._seen == reference._seen
        assert list(decoder._order) == list(reference._order)
        assert decoder._prefixes == reference._prefixes
        assert decoder._by_peer == reference._by_peer


def state(window: int) -> speedups.CryptoState:
    """A decoder's state for crypto_open, with the reference's prefix lookup."""
    decoder = ReferenceDecoder(keys(), SKEW, window)
    return (decoder._seen, decoder._order, window, decoder._prefixes, decoder._prefix, Lines)


@pytest.mark.skipif(compiled_module is None, reason="the C extension is not built")
@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=60), st.sampled_from([8, 16]),
                          st.binary(max_size=40)), min_size=1, max_size=10),
       st.sampled_from([(NOW - SKEW, NOW + SKEW), (0, 10**12), (-1.0, float("inf")),
                        (float("nan"), float("nan")), (10**30, 10**31)]),
       st.sampled_from([0, 1, 2, -1]), st.sampled_from([None, "app"]))
def test_crypto_open_matches_its_reference(calls: list[tuple[bytes, int, bytes]],
                                           bounds: tuple[float, float], window: int,
                                           app: str | None) -> None:
    """The compiled crypto_open and the pure one agree on arbitrary cipher output (valid
    and broken padding, any head), int and float skew bounds, and leave equal state."""
    assert compiled_module is not None
    low, high = bounds
    ours, theirs = state(window), state(window)
    for raw, block, data in calls:
        got = compiled_module.crypto_open(raw, block, data, low, high, app, ours)
        want = speedups._crypto_open_py(raw, block, data, low, high, app, theirs)
        assert got == want
        assert type(got) is type(want)
    assert ours[0] == theirs[0]
    assert list(ours[1]) == list(theirs[1])
    assert ours[3] == theirs[3]


@pytest.mark.parametrize("decoder_class", [CryptoDecoder, PureDecoder])
def test_prefix_cache_eviction_at_its_real_bound(decoder_class: type[CryptoDecoder]) -> None:
    """Past 4096 distinct prefixes the cache starts again, and names stay right before and
    after, as the reference decoder has them."""
    decoder = decoder_class(keys(), SKEW, 0)
    reference = ReferenceDecoder(keys(), SKEW, 0)
    names = [b"app%d/web.%d" % (i, i % 7) for i in range(4100)] * 2
    for i, prefix in enumerate(names):
        data = encrypt(frame(b"line %d\n" % i, MICROS + i, prefix), "alpha", "aes-256-cbc")
        got = decoder.decode(data, "p", NOW)
        same(got, reference.decode(data, "p", NOW))
        assert isinstance(got, Lines)
        assert got.app == prefix.split(b"/")[0].decode()
    assert decoder._prefixes == reference._prefixes
    assert 0 < len(decoder._prefixes) < 4096


def test_replay_window_evicts_the_oldest() -> None:
    """With a window of two, the third datagram pushes the first out: it is accepted again,
    the second is still a replay."""
    decoder = CryptoDecoder(keys(), SKEW, 2)
    sent = [encrypt(frame(b"n %d" % i, MICROS + i), "alpha", "aes-256-cbc") for i in range(3)]
    assert all(isinstance(decoder.decode(d, "p", NOW), Lines) for d in sent)
    assert isinstance(decoder.decode(sent[0], "p", NOW), Lines)
    dropped = decoder.decode(sent[2], "p", NOW)
    assert not isinstance(dropped, Lines)
    assert dropped.reason == "replay"
