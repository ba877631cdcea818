"""The collector's side of uWSGI logcrypto: decrypting and checking each datagram.

The format itself (cipher parameters, key and IV derivation) lives in logwire.logcrypto.
Decryption is done with one long-lived CBC context per key, never finalized: building a
fresh context per datagram costs about three times the decryption itself. Each datagram is
fed behind one extra block equal to the IV, whose own output is thrown away: CBC chains
each block to the ciphertext block before it, so the datagram's first block is chained to
the IV, as if the context were new. One OpenSSL call per datagram does all the work.

What follows the cipher (padding, timestamp, skew, NUL, replay, prefix, split) is one call
of collector.speedups.crypto_open per key tried: compiled where the extension is built,
its pure reference otherwise; the key cache and fallback stay here.

Where the extension is built with libcrypto and offers every key's algorithm, all of this
(size checks, key choice, cipher, checks) is instead one C call per batch of datagrams,
collector.speedups.crypto_batch, with libcrypto's own long-lived CBC contexts; `decode`
then is a batch of one. The path above stays as the pure path, with the same results
(tests/unit/test_crypto_batch.py compares them).
"""

from __future__ import annotations

import re
import sys
from collections import deque
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, modes

from collector import speedups
from collector.decode.result import Decoded, Dropped, Lines
from collector.speedups import CryptoDrop, CryptoState, crypto_open
from logwire.logcrypto import ALGORITHMS, derive_iv, derive_key
from logwire.prefix import CRYPTO_PREFIX

# Prefixes (`APP/SOURCE `) remembered, so that a sender's usual datagram costs a dict
# lookup instead of a regex match and two decodes; senders choose them, hence a bound.
_MAX_PREFIXES = 4096
_CRYPTO_PREFIX_BYTES = re.compile(CRYPTO_PREFIX.pattern.encode())
_BAD_LENGTH = Dropped("bad_length")
_BAD_PADDING = Dropped("bad_padding")
_BAD_TIMESTAMP = Dropped("bad_timestamp")


class CryptoKey:
    """One secret, ready to decrypt: a reusable CBC context, reset to the IV per datagram."""

    __slots__ = ("_block", "_cbc", "_iv", "_native", "app", "label")

    def __init__(self, secret: str | bytes, algo: str, iv: str | bytes | None = None,
                 app: str | None = None, label: str = "") -> None:
        spec = ALGORITHMS[algo]
        self._block = spec.block
        self._iv = derive_iv(iv, algo)
        key = derive_key(secret, algo)
        self._cbc = Cipher(spec.make(key), modes.CBC(self._iv)).decryptor()
        # libcrypto's own context for collector.speedups.crypto_batch, where it can.
        make = speedups.crypto_cipher
        self._native = make(algo, key, self._iv) if make is not None else None
        self.app = app
        self.label = label or algo

    def cipher(self, ciphertext: bytes) -> bytes:
        """The CBC output for the IV block then `ciphertext` (whole blocks only): the first
        block is garbage, the rest the plaintext with its padding."""
        return self._cbc.update(self._iv + ciphertext)

    def decrypt(self, ciphertext: bytes) -> bytes | None:
        """The unpadded plaintext, or None when the length or the PKCS#7 padding is not
        valid."""
        block = self._block
        size = len(ciphertext)
        if not size or size % block:
            # A partial block would stay buffered in the context and shift every later
            # datagram: never feed one.
            return None
        # The IV block in front makes the IV the chaining value for the first real block;
        # its own output (the first `block` bytes) is garbage and cut.
        plain = self.cipher(ciphertext)
        pad = plain[-1]
        if not 0 < pad <= block or plain[-pad:] != bytes((pad,)) * pad:
            return None
        return plain[block:-pad]


class CryptoDecoder:
    """Decodes logcrypto datagrams under any of several keys.

    The key that last worked for a sender is tried first, so the usual datagram costs one
    decryption however many secrets the listener holds (one per app, or old and new during
    a rotation). Replays of a recent datagram are dropped: its last cipher block depends on
    the whole message, microsecond timestamp included, so a repeat is a copy, not a new line.
    """

    format = "crypto"
    # collector.speedups' (compiled or pure); tests put the pure one on a subclass.
    _open = staticmethod(crypto_open)
    # The whole batch in C (None where not built); tests set None on a subclass.
    _batch: speedups.CryptoBatch | None = speedups.crypto_batch

    def __init__(self, keys: Sequence[CryptoKey], max_skew: float = 300.0,
                 replay_window: int = 65536, max_senders: int = 65536) -> None:
        if not keys:
            raise ValueError("CryptoDecoder needs at least one key")
        self._keys = list(keys)
        self._max_skew = max_skew
        self._by_peer: dict[str, int] = {}
        self._max_senders = max_senders
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()
        self._replay_window = replay_window
        self._block_min = min(k._block for k in self._keys)
        self._prefixes: dict[bytes, tuple[str, str]] = {}
        self._state: CryptoState = (self._seen, self._order, replay_window, self._prefixes,
                                    self._prefix, Lines)
        # Every key in libcrypto's hands, or None: then the pure path for all of them,
        # since keys are tried in order and one path must see them all.
        natives = tuple((key._native, key.app) for key in self._keys)
        self._natives = (natives if self._batch is not None
                         and all(native is not None for native, _ in natives) else None)

    @property
    def batched(self) -> bool:
        """Whether batches are decoded by one C call (else datagram by datagram)."""
        return self._natives is not None

    def decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """Decrypt, check and split one datagram."""
        natives = self._natives
        if natives is not None:
            assert self._batch is not None
            decoded, drops = self._batch(((data, peer),), now - self._max_skew,
                                         now + self._max_skew, sys.maxsize, natives,
                                         self._by_peer, self._max_senders, self._state, False)
            return decoded[0][1] if decoded else Dropped(drops[0][0])
        return self._decode(data, peer, now)

    def decode_many(self, batch: Sequence[tuple[bytes, str]], now: float, max_datagram: int
                    ) -> tuple[list[tuple[str, Lines]], list[CryptoDrop]]:
        """Each datagram (payload, host) of a batch decoded as `decode` would, with the
        listener's size check first: the accepted ones' (host, Lines) in order, and
        (reason, host, exception or None) for each of the others (`oversize` past
        `max_datagram`; `internal_error` with the exception where decoding raised).
        """
        natives = self._natives
        if natives is not None:
            assert self._batch is not None
            return self._batch(batch, now - self._max_skew, now + self._max_skew,
                               max_datagram, natives, self._by_peer, self._max_senders,
                               self._state, True)
        decoded: list[tuple[str, Lines]] = []
        drops: list[CryptoDrop] = []
        decode = self._decode
        for data, host in batch:
            try:
                if len(data) > max_datagram:
                    drops.append(("oversize", host, None))
                    continue
                result = decode(data, host, now)
            except Exception as error:  # the listener logs it, per datagram
                drops.append(("internal_error", host, error))
                continue
            if type(result) is Dropped:
                drops.append((result.reason, host, None))
            else:
                assert isinstance(result, Lines)
                decoded.append((host, result))
        return decoded, drops

    def _decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """`decode` datagram by datagram, with the cipher of `cryptography`."""
        size = len(data)
        if size == 0 or size % self._block_min:
            return _BAD_LENGTH
        low = now - self._max_skew
        high = now + self._max_skew
        keys = self._keys
        first = self._by_peer.get(peer, 0)
        key = keys[first]
        # 0: no key had valid padding; 1: one had, but no timestamp followed.
        outcome = 0
        # The usual case: the sender's key works at the first try.
        if not size % key._block:
            opened = self._open(key.cipher(data), key._block, data, low, high,
                                key.app, self._state)
            if isinstance(opened, Lines):
                return opened
            if isinstance(opened, str):
                return Dropped(opened)
            outcome = opened
        for index, key in enumerate(keys):
            if index == first or size % key._block:
                continue
            opened = self._open(key.cipher(data), key._block, data, low, high,
                                key.app, self._state)
            if isinstance(opened, int):
                outcome |= opened
                continue
            if len(self._by_peer) >= self._max_senders:
                self._by_peer.clear()
            self._by_peer[peer] = index
            return Dropped(opened) if isinstance(opened, str) else opened
        return _BAD_TIMESTAMP if outcome == 1 else _BAD_PADDING

    def _prefix(self, body: bytes) -> tuple[str, str, int] | None:
        """(app, source, length) of the body's `APP/SOURCE ` prefix, None without one.

        Neither name holds a space, so a prefix is the whole first word: a body whose first
        word is a prefix seen before has that prefix, and the same strings are handed out
        again (which also lets marshal send them to the writer as back-references).
        """
        space = body.find(b" ")
        if space <= 0:
            return None
        head = body[:space + 1]
        known = self._prefixes.get(head)
        if known is not None:
            return known[0], known[1], space + 1
        match = _CRYPTO_PREFIX_BYTES.match(body)
        if match is None:
            return None
        names = (match.group(1).decode(), match.group(2).decode())
        if len(self._prefixes) >= _MAX_PREFIXES:
            self._prefixes.clear()
        # The same bytes as `head`: the match ends at the first space.
        self._prefixes[body[:match.end()]] = names
        return names[0], names[1], match.end()
