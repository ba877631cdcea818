"""The crypto decoder as it was at 5ab9c9a, all Python: the reference the compiled
decoder's results are compared with (tests/unit/test_crypto_compiled.py).

Its keys are collector.decode.crypto's CryptoKey, whose `decrypt` is unchanged; lines are
split by collector.decode.text, the reference splitter.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

from collector.decode.crypto import CryptoKey
from collector.decode.result import Decoded, Dropped, Lines
from collector.decode.text import split_lines
from logwire.prefix import CRYPTO_PREFIX

_MAX_TIMESTAMP_DIGITS = 20
_MAX_PREFIXES = 4096
_CRYPTO_PREFIX_BYTES = re.compile(CRYPTO_PREFIX.pattern.encode())


def parse_plaintext(plain: bytes) -> tuple[int, bytes] | None:
    """Split `<micros> <rest>`; None when the head is not a decimal timestamp."""
    space = plain.find(b" ", 0, _MAX_TIMESTAMP_DIGITS + 1)
    if space <= 0:
        return None
    head = plain[:space]
    if not head.isdigit():
        return None
    return int(head), plain[space + 1:]


class ReferenceDecoder:
    """Decodes logcrypto datagrams under any of several keys.

    The key that last worked for a sender is tried first, so the usual datagram costs one
    decryption however many secrets the listener holds (one per app, or old and new during
    a rotation). Replays of a recent datagram are dropped: its last cipher block depends on
    the whole message, microsecond timestamp included, so a repeat is a copy, not a new line.
    """

    format = "crypto"

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

    def decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """Decrypt, check and split one datagram."""
        size = len(data)
        if size == 0 or size % self._block_min:
            return Dropped("bad_length")
        found = self._decrypt(data, peer)
        if found is None:
            return Dropped("bad_padding")
        if isinstance(found, Dropped):
            return found
        key, micros, body = found
        emitted = micros / 1e6
        if emitted < now - self._max_skew:
            return Dropped("stale_timestamp")
        if emitted > now + self._max_skew:
            return Dropped("future_timestamp")
        if b"\0" in body:
            return Dropped("implausible_text")
        if self._replay_window and self._is_replay(data):
            return Dropped("replay")
        app = key.app
        source = None
        named = self._prefix(body)
        if named is not None:
            app, source, skip = named
            body = body[skip:]
        lines, escaped = split_lines(body)
        if not lines:
            return Dropped("empty")
        return Lines(lines, app, source, emitted, escaped)

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

    def _decrypt(self, data: bytes, peer: str) -> tuple[CryptoKey, int, bytes] | Dropped | None:
        """Try the sender's last key, then the rest; remember the one that works."""
        keys = self._keys
        first = self._by_peer.get(peer, 0)
        key = keys[first]
        outcome: Dropped | None = None
        # The usual case: the sender's key works at the first try.
        if not len(data) % key._block:
            plain = key.decrypt(data)
            if plain is not None:
                parsed = parse_plaintext(plain)
                if parsed is not None:
                    return key, parsed[0], parsed[1]
                outcome = Dropped("bad_timestamp")
        for index, key in enumerate(keys):
            if index == first or len(data) % key._block:
                continue
            plain = key.decrypt(data)
            if plain is None:
                continue
            parsed = parse_plaintext(plain)
            if parsed is None:
                outcome = Dropped("bad_timestamp")
                continue
            if len(self._by_peer) >= self._max_senders:
                self._by_peer.clear()
            self._by_peer[peer] = index
            return key, parsed[0], parsed[1]
        return outcome

    def _is_replay(self, data: bytes) -> bool:
        tag = data[-16:]
        if tag in self._seen:
            return True
        self._seen.add(tag)
        self._order.append(tag)
        if len(self._order) > self._replay_window:
            self._seen.discard(self._order.popleft())
        return False
