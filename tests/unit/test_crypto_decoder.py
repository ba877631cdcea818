"""The logcrypto decoder, fed bytes made by `openssl enc` and by hand-broken datagrams."""

from __future__ import annotations

import re
import time

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.decode.result import Dropped, Lines
from logwire.logcrypto import ALGORITHMS, derive_iv, derive_key, encrypt, frame
from tests.support.openssl import openssl_encrypt

NOW = 1_790_000_000.0
MICROS = int(NOW * 1e6)


def decoder(secret: str = "s3cret",  # noqa: S107 - a test key
            algo: str = "aes-256-cbc", iv: str | None = None, *, max_skew: float = 300.0,
            replay_window: int = 65536) -> CryptoDecoder:
    """A decoder with one key."""
    return CryptoDecoder([CryptoKey(secret, algo, iv)], max_skew=max_skew,
                         replay_window=replay_window)


def test_key_and_iv_padding_follow_logcrypto() -> None:
    """Secret NUL-padded or cut to the key length; IV '0'-padded or cut to the block."""
    assert derive_key("abc", "aes-128-cbc") == b"abc" + b"\0" * 13
    assert derive_key("x" * 40, "aes-256-cbc") == b"x" * 32
    assert derive_key("k", "bf-cbc") == b"k" + b"\0" * 15
    assert derive_iv(None, "aes-256-cbc") == b"0" * 16
    assert derive_iv("12", "aes-192-cbc") == b"12" + b"0" * 14
    assert derive_iv("0123456789", "bf-cbc") == b"01234567"


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
@pytest.mark.parametrize("iv", [None, "iv-given"])
@pytest.mark.parametrize("prefix", [None, b"shop/web.1"])
def test_decodes_openssl_ciphertext(algo: str, iv: str | None, prefix: bytes | None) -> None:
    """Every algorithm, with and without iv= and prefix=, against OpenSSL's own output."""
    plain = frame(b"[pid: 7|app: 0|req: 1/1] GET / hello\n", MICROS, prefix)
    data = openssl_encrypt(plain, b"s3cret", algo, iv.encode() if iv else None)
    assert data == encrypt(plain, "s3cret", algo, iv)
    result = decoder(algo=algo, iv=iv).decode(data, "10.0.0.1", NOW)
    assert isinstance(result, Lines), result
    assert result.lines == ["[pid: 7|app: 0|req: 1/1] GET / hello"]
    assert result.emitted_at == pytest.approx(NOW)
    if prefix:
        assert (result.app, result.source) == ("shop", "web.1")
    else:
        assert (result.app, result.source) == (None, None)


def test_multiline_datagram_is_split() -> None:
    """A backtrace arrives as one datagram of many lines; each becomes a line."""
    body = b"*** backtrace of 12 ***\nuwsgi(+0x1)\nuwsgi(+0x2)\n*** end of backtrace ***\n"
    data = encrypt(frame(body, MICROS), "s3cret", "aes-256-cbc")
    result = decoder().decode(data, "h", NOW)
    assert isinstance(result, Lines)
    assert result.lines == ["*** backtrace of 12 ***", "uwsgi(+0x1)", "uwsgi(+0x2)",
                            "*** end of backtrace ***"]


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "bad_length"),
    (b"x" * 17, "bad_length"),
    (bytes(range(32)), "bad_padding"),
])
def test_garbage_is_dropped_with_a_reason(data: bytes, reason: str) -> None:
    """Empty, non-block-sized and random datagrams each get their own reason."""
    assert decoder().decode(data, "h", NOW) == Dropped(reason)


def test_wrong_key_and_truncation_are_dropped() -> None:
    """Ciphertext under another key, or cut short, never decodes."""
    data = encrypt(frame(b"hello\n", MICROS), "other", "aes-256-cbc")
    assert isinstance(decoder().decode(data, "h", NOW), Dropped)
    good = encrypt(frame(b"hello world, a longer line\n", MICROS), "s3cret", "aes-256-cbc")
    assert decoder().decode(good[:16], "h", NOW) in (Dropped("bad_padding"),
                                                      Dropped("bad_timestamp"))


def test_timestamp_window() -> None:
    """Lines stamped outside the skew window are stale or from the future."""
    dec = decoder(max_skew=60)
    old = encrypt(frame(b"x\n", MICROS - 61_000_000), "s3cret", "aes-256-cbc")
    new = encrypt(frame(b"x\n", MICROS + 61_000_000), "s3cret", "aes-256-cbc")
    ok = encrypt(frame(b"x\n", MICROS - 59_000_000), "s3cret", "aes-256-cbc")
    assert dec.decode(old, "h", NOW) == Dropped("stale_timestamp")
    assert dec.decode(new, "h", NOW) == Dropped("future_timestamp")
    assert isinstance(dec.decode(ok, "h", NOW), Lines)


def test_non_numeric_head_is_bad_timestamp() -> None:
    """Valid padding but no timestamp: not what logcrypto sends."""
    data = encrypt(b"hello there\n", "s3cret", "aes-256-cbc")
    assert decoder().decode(data, "h", NOW) == Dropped("bad_timestamp")


def test_nul_bytes_are_implausible() -> None:
    """Decrypted text holding NUL bytes is not a log line."""
    data = encrypt(frame(b"a\0b\n", MICROS), "s3cret", "aes-256-cbc")
    assert decoder().decode(data, "h", NOW) == Dropped("implausible_text")


def test_replayed_datagram_is_dropped_once_seen() -> None:
    """The same ciphertext twice: the second is a replay; the window is bounded."""
    dec = decoder(replay_window=2)
    first, second, third = (encrypt(frame(b"line %d\n" % i, MICROS + i), "s3cret",
                                    "aes-256-cbc") for i in range(3))
    assert isinstance(dec.decode(first, "h", NOW), Lines)
    assert dec.decode(first, "h", NOW) == Dropped("replay")
    dec.decode(second, "h", NOW)
    dec.decode(third, "h", NOW)
    # `first` has left the two-entry window, so it is no longer recognised.
    assert isinstance(dec.decode(first, "h", NOW), Lines)


def test_invalid_utf8_is_kept_escaped() -> None:
    """Bytes that are not UTF-8 survive as escapes and are counted."""
    data = encrypt(frame(b"caf\xe9 ok\n", MICROS), "s3cret", "aes-256-cbc")
    result = decoder().decode(data, "h", NOW)
    assert isinstance(result, Lines)
    assert result.lines == ["caf\\xe9 ok"]
    assert result.escaped == 1


class CountingKey(CryptoKey):
    """A key that counts its decryptions."""

    calls = 0

    def cipher(self, ciphertext: bytes) -> bytes:
        """Count, then decrypt."""
        type(self).calls += 1
        return super().cipher(ciphertext)


def test_several_secrets_and_the_per_sender_cache() -> None:
    """Each app's secret decodes its own datagrams; after the first datagram from a
    sender, its key is tried first, so each further datagram costs one decryption."""
    keys = [CountingKey("alpha", "aes-256-cbc", app="alpha"),
            CountingKey("beta", "aes-128-cbc", iv="xyz", app="beta"),
            CountingKey("gamma", "bf-cbc", app="gamma")]
    dec = CryptoDecoder(keys)
    gamma = [encrypt(frame(b"g %d\n" % i, MICROS + i), "gamma", "bf-cbc") for i in range(5)]
    first = dec.decode(gamma[0], "10.0.0.9", NOW)
    assert isinstance(first, Lines)
    assert first.app == "gamma"
    CountingKey.calls = 0
    for data in gamma[1:]:
        assert isinstance(dec.decode(data, "10.0.0.9", NOW), Lines)
    assert dec._by_peer == {"10.0.0.9": 2}
    # Only the pure path decrypts through CryptoKey.cipher (the batch path in libcrypto).
    assert CountingKey.calls == (0 if dec.batched else 4)
    beta = encrypt(frame(b"b\n", MICROS), "beta", "aes-128-cbc", "xyz")
    result = dec.decode(beta, "10.0.0.7", NOW)
    assert isinstance(result, Lines)
    assert result.app == "beta"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    """Whatever arrives, the decoder answers with lines or a drop reason."""
    result = decoder().decode(data, "h", NOW)
    assert isinstance(result, Lines | Dropped)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=2000).filter(
    lambda b: b.strip(b"\r\n") != b"" and not re.match(rb"[A-Za-z0-9][\w.\-]*/", b)),
       st.sampled_from(sorted(ALGORITHMS)))
def test_fuzz_roundtrip(message: bytes, algo: str) -> None:
    """Any message logcrypto could send comes back line for line, or is dropped for NUL."""
    data = encrypt(frame(message, MICROS), "key", algo)
    result = decoder("key", algo).decode(data, "h", NOW)
    if b"\0" in message:
        assert result == Dropped("implausible_text")
        return
    assert isinstance(result, Lines)
    expected = [part.rstrip(b"\r").decode("utf-8", "backslashreplace")
                for part in message.split(b"\n") if part.rstrip(b"\r")]
    assert result.lines == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=7))
def test_fuzz_flipped_bit_never_raises(offset: int, bit: int) -> None:
    """A flipped bit garbles or drops the datagram; it never crashes the decoder."""
    data = bytearray(encrypt(frame(b"a fairly ordinary log line\n", MICROS), "k",
                             "aes-256-cbc"))
    data[offset % len(data)] ^= 1 << bit
    result = decoder("k").decode(bytes(data), "h", NOW)
    assert isinstance(result, Lines | Dropped)


def test_now_is_not_needed_from_the_clock() -> None:
    """The decoder uses only the `now` it is given (it is a pure function of its input)."""
    data = encrypt(frame(b"x\n", 1_000_000), "s3cret", "aes-256-cbc")
    assert isinstance(decoder().decode(data, "h", 1.0), Lines)
    assert decoder().decode(data, "h", time.time()) == Dropped("stale_timestamp")


def _reference_prefix(body: bytes) -> tuple[str | None, str | None, bytes]:
    """The prefix as the regex alone reads it (what the decoder did before its cache)."""
    match = re.match(rb"([A-Za-z0-9][A-Za-z0-9_.\-]*)/([A-Za-z0-9_.@\-]+) ", body)
    if match is None:
        return None, None, body
    return match.group(1).decode(), match.group(2).decode(), body[match.end():]


_PREFIX_PIECES = st.sampled_from([b"shop", b"web.1", b"a", b"x-y", b"h@web.2", b"/", b" ",
                                  b"", b"\xff", b"shop/web.1", b"-z", b"_q", b"9"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_PREFIX_PIECES, max_size=5).map(b"".join), min_size=1,
                max_size=12))
def test_prefix_cache_reads_as_the_regex_does(heads: list[bytes]) -> None:
    """Remembered prefixes give the same app, source and lines as matching each datagram
    afresh, whatever sequence of (valid, invalid, repeated) prefixes arrives."""
    dec = decoder(replay_window=0)
    for index, head in enumerate(heads * 2):
        body = head + b" line %d\n" % index
        data = encrypt(frame(body, MICROS + index), "s3cret", "aes-256-cbc")
        result = dec.decode(data, "10.0.0.1", NOW)
        app, source, rest = _reference_prefix(body)
        if isinstance(result, Dropped):
            # Only an all-blank remainder is dropped, as before.
            assert result.reason == "empty"
            assert not rest.strip(), (body, result)
            continue
        assert (result.app, result.source) == (app, source), body
        assert result.lines == [rest.decode("utf-8", "backslashreplace").rstrip("\n")], body


def test_a_senders_prefix_is_read_once() -> None:
    """A sender's usual datagram reuses the names read from its first one (the same
    strings, so marshal sends them to the store writer as back-references)."""
    dec = decoder()
    results = [dec.decode(encrypt(frame(b"hello %d\n" % i, MICROS + i, b"shop/web.1"),
                                  "s3cret", "aes-256-cbc"), "10.0.0.1", NOW)
               for i in range(3)]
    assert all(isinstance(r, Lines) for r in results)
    first, *rest = (r for r in results if isinstance(r, Lines))
    assert (first.app, first.source) == ("shop", "web.1")
    for later in rest:
        assert later.app is first.app
        assert later.source is first.source


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=1, max_size=300),
                          st.binary(min_size=1, max_size=120).map(lambda m: m + b"\n")
                          .map(lambda m: b"\x01" + m)),
                min_size=1, max_size=8),
       st.sampled_from(sorted(ALGORITHMS)))
def test_one_key_decrypts_every_datagram_as_a_fresh_context_would(
        items: list[bytes], algo: str) -> None:
    """The long-lived context gives, datagram after datagram (good ones, garbage of any
    length, wrong padding), what a fresh CBC context per datagram gives."""
    key = CryptoKey("s3cret", algo)
    for item in items:
        # Items starting with 1 are real messages; the rest are sent raw, as garbage.
        data = encrypt(item[1:], "s3cret", algo) if item[0] == 1 else item
        want: bytes | None = None
        if data and not len(data) % ALGORITHMS[algo].block:
            fresh = Cipher(ALGORITHMS[algo].make(derive_key("s3cret", algo)),
                           modes.CBC(derive_iv(None, algo))).decryptor()
            padded = fresh.update(data) + fresh.finalize()
            pad = padded[-1]
            if 0 < pad <= ALGORITHMS[algo].block and padded.endswith(bytes((pad,)) * pad):
                want = padded[:-pad]
        assert key.decrypt(data) == want
        if item[0] == 1:
            assert want == item[1:]
