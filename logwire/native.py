"""The native format's bytes, both directions: key tokens, the header, the stream cipher
and the plaintext records. docs/PROTOCOL.md specifies them; this module is the one place
that code lives (the shipper encodes with it, the collector decodes with it).

A datagram:

    header (32 bytes, authenticated, in clear) || AEAD(plaintext) || tag (16 bytes)

    header: version u8 | reserved u8 | length u16 | key id u32 | stream id u64
            | sequence u64 | send time u64 (microseconds since the epoch), big-endian

    plaintext: first line u64 | dropped total u64 | app length u8 | app
               | source length u8 | source | records...
    record:    type u8 | body length u16 | body
               LINE (1): one log line, without its newline
               PART (2): part index u8 | part count u8 | a piece of one long line

Each stream (one sidecar run) has its own AEAD key, derived with HKDF-SHA256 from the
shared key and the stream's random 64-bit id; the nonce is the stream's datagram sequence
number. Why a nonce can never repeat under one key is argued in docs/PROTOCOL.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from logwire.errors import WireError

VERSION: Final = 1
HEADER = struct.Struct(">BBHIQQQ")
HEADER_SIZE: Final = HEADER.size  # 32
TAG_SIZE: Final = 16
PLAIN_HEAD = struct.Struct(">QQ")
RECORD_HEAD = struct.Struct(">BH")
RECORD_LINE: Final = 1
RECORD_PART: Final = 2
PART_HEAD = struct.Struct(">BB")
# A line may be split over at most this many datagrams (64 x ~1.4 kB: more than uWSGI's
# socket logger can hand over in one datagram anyway).
MAX_PARTS: Final = 64
DEFAULT_BUDGET: Final = 1472  # 1500-byte MTU less the IPv4 and UDP headers
MIN_BUDGET: Final = 256
MAX_NAME: Final = 255
MAX_SEQUENCE: Final = 2**64 - 1

TOKEN_PREFIX: Final = "lsk1"  # noqa: S105 - the token's format name, not a secret
KEY_SIZE: Final = 32
ALGORITHMS: Final = ("aes256gcm", "chacha20poly1305")
_KEY_ID_LABEL: Final = b"uwsgi-logship key id v1\0"
_STREAM_KEY_LABEL: Final = b"uwsgi-logship stream key v1\0"
_NONCE_PAD: Final = b"\0\0\0\0"


def key_id_for(algo: str, secret: bytes) -> int:
    """The 32-bit key id: the first four bytes of SHA-256 over a label, the algorithm and
    the key. Derived, not chosen, so that a token whose key was mistyped is caught."""
    digest = hashlib.sha256(_KEY_ID_LABEL + algo.encode() + b"\0" + secret).digest()
    return int.from_bytes(digest[:4])


@dataclass(frozen=True)
class NativeKey:
    """One shared key: its algorithm, its 32 bytes and the id datagrams name it by."""

    algo: str
    secret: bytes = field(repr=False)
    key_id: int

    @property
    def token(self) -> str:
        """`lsk1.ALGO.KEYID.KEY`: the one printable form, for config and environment."""
        key = base64.urlsafe_b64encode(self.secret).rstrip(b"=").decode()
        return f"{TOKEN_PREFIX}.{self.algo}.{self.key_id:08x}.{key}"

    @property
    def label(self) -> str:
        """What logs and errors may show of a key: its algorithm and id."""
        return f"{self.algo}/{self.key_id:08x}"


def make_key(algo: str, secret: bytes) -> NativeKey:
    """A key from its parts (keygen, tests)."""
    if algo not in ALGORITHMS:
        raise WireError(f"unknown algorithm {algo!r}; use one of {', '.join(ALGORITHMS)}")
    if len(secret) != KEY_SIZE:
        raise WireError(f"a key is {KEY_SIZE} bytes, not {len(secret)}")
    return NativeKey(algo, secret, key_id_for(algo, secret))


def generate_key(algo: str = "aes256gcm") -> NativeKey:
    """A new random key."""
    return make_key(algo, os.urandom(KEY_SIZE))


def parse_key_token(token: str) -> NativeKey:
    """Read a `shipper keygen` token; a WireError says what is wrong with it (never
    showing the key)."""
    parts = token.strip().split(".")
    if len(parts) != 4 or parts[0] != TOKEN_PREFIX:
        raise WireError(f"not a key token: expected {TOKEN_PREFIX}.ALGO.KEYID.KEY "
                        "(make one with `shipper keygen`)")
    _, algo, key_id_text, encoded = parts
    if algo not in ALGORITHMS:
        raise WireError(f"unknown algorithm {algo!r} in key token; "
                        f"use one of {', '.join(ALGORITHMS)}")
    try:
        key_id = int(key_id_text, 16)
        secret = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (ValueError, binascii.Error):
        raise WireError("key token is damaged (bad key id or key encoding)") from None
    if len(key_id_text) != 8 or len(secret) != KEY_SIZE:
        raise WireError("key token is damaged (wrong key id or key length)")
    if key_id_for(algo, secret) != key_id:
        raise WireError("key token is damaged (its key id does not match its key)")
    return NativeKey(algo, secret, key_id)


def stream_key(key: NativeKey, stream_id: int) -> bytes:
    """The stream's own AEAD key: HKDF-SHA256(key, salt = stream id, info = label,
    algorithm, key id)."""
    info = _STREAM_KEY_LABEL + key.algo.encode() + b"\0" + key.key_id.to_bytes(4)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=stream_id.to_bytes(8),
                info=info).derive(key.secret)


class StreamCipher:
    """Seals and opens the datagrams of one stream (one key, one stream id)."""

    __slots__ = ("_aead",)

    def __init__(self, key: NativeKey, stream_id: int) -> None:
        derived = stream_key(key, stream_id)
        self._aead = AESGCM(derived) if key.algo == "aes256gcm" else ChaCha20Poly1305(derived)

    def seal(self, header: bytes, seq: int, plaintext: bytes) -> bytes:
        """Ciphertext and tag of `plaintext`, the header authenticated alongside."""
        return self._aead.encrypt(_NONCE_PAD + seq.to_bytes(8), plaintext, header)

    def open(self, header: bytes, seq: int, sealed: bytes) -> bytes | None:
        """The plaintext, or None when the tag does not verify."""
        try:
            return self._aead.decrypt(_NONCE_PAD + seq.to_bytes(8), sealed, header)
        except InvalidTag:
            return None


def seal_datagram(cipher: StreamCipher, plaintext: bytes, *, key_id: int, stream_id: int,
                  seq: int, micros: int) -> bytes:
    """One whole datagram: header, then the sealed plaintext."""
    length = HEADER_SIZE + len(plaintext) + TAG_SIZE
    header = HEADER.pack(VERSION, 0, length, key_id, stream_id, seq, micros)
    return header + cipher.seal(header, seq, plaintext)


@dataclass(slots=True)
class Part:
    """A piece of one long line: which of how many, and its bytes."""

    index: int
    count: int
    data: bytes


@dataclass(slots=True)
class Payload:
    """A decrypted datagram: where its lines start in the stream, and the lines."""

    first_line: int
    dropped_total: int
    app: bytes
    source: bytes
    lines: list[bytes]
    part: Part | None = None

    @property
    def lines_ended(self) -> int:
        """How many stream lines end in this datagram (a part ends one only if last)."""
        if self.part is not None:
            return 1 if self.part.index == self.part.count - 1 else 0
        return len(self.lines)


def origin_bytes(app: bytes, source: bytes) -> bytes:
    """The app and source fields of the plaintext."""
    return bytes((len(app),)) + app + bytes((len(source),)) + source


def plaintext_head(first_line: int, dropped_total: int, app: bytes, source: bytes) -> bytes:
    """The plaintext up to its first record."""
    return PLAIN_HEAD.pack(first_line, dropped_total) + origin_bytes(app, source)


def line_records(lines: Iterable[bytes]) -> bytes:
    """LINE records for `lines`."""
    return b"".join(RECORD_HEAD.pack(RECORD_LINE, len(line)) + line for line in lines)


def part_record(index: int, count: int, data: bytes) -> bytes:
    """The PART record of one piece of a long line."""
    return RECORD_HEAD.pack(RECORD_PART, PART_HEAD.size + len(data)) + PART_HEAD.pack(
        index, count) + data


def decode_payload(plain: bytes) -> Payload | None:
    """Parse a plaintext; None when it is malformed (a sender bug: the tag was good)."""
    size = len(plain)
    if size < PLAIN_HEAD.size + 2:
        return None
    first_line, dropped_total = PLAIN_HEAD.unpack_from(plain)
    at = PLAIN_HEAD.size
    app_len = plain[at]
    app = plain[at + 1:at + 1 + app_len]
    at += 1 + app_len
    if at >= size or len(app) != app_len:
        return None
    source_len = plain[at]
    source = plain[at + 1:at + 1 + source_len]
    at += 1 + source_len
    if len(source) != source_len:
        return None
    lines: list[bytes] = []
    part: Part | None = None
    unpack = RECORD_HEAD.unpack_from
    head = RECORD_HEAD.size
    while at < size:
        if at + head > size:
            return None
        kind, length = unpack(plain, at)
        at += head
        end = at + length
        if end > size:
            return None
        if kind == RECORD_LINE and part is None:
            lines.append(plain[at:end])
        elif kind == RECORD_PART and part is None and not lines and end == size:
            if length < PART_HEAD.size:
                return None
            index, count = PART_HEAD.unpack_from(plain, at)
            if not 2 <= count <= MAX_PARTS or index >= count:
                return None
            part = Part(index, count, plain[at + PART_HEAD.size:end])
        else:
            return None
        at = end
    return Payload(first_line, dropped_total, app, source, lines, part)


def budget_room(budget: int, app: bytes, source: bytes) -> int:
    """Plaintext bytes left for records in a datagram of `budget` bytes."""
    return budget - HEADER_SIZE - TAG_SIZE - PLAIN_HEAD.size - len(origin_bytes(app, source))


def split_line(line: bytes, room: int) -> Sequence[bytes]:
    """The pieces of a line too long for one datagram, each fitting a PART record."""
    size = room - RECORD_HEAD.size - PART_HEAD.size
    return [line[i:i + size] for i in range(0, len(line), size)]
