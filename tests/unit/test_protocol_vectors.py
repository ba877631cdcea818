"""The test vectors in docs/PROTOCOL.md, parsed out of the document itself, checked against
the project's code and against a second implementation written from the document's text
(HKDF from RFC 5869 with the standard library, the header packed by hand)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from collector.decode.native import NativeDecoder
from collector.decode.result import Lines
from logwire.native import (
    StreamCipher,
    line_records,
    parse_key_token,
    part_record,
    plaintext_head,
    seal_datagram,
    stream_key,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"


def vectors() -> list[dict[str, list[str]]]:
    """Every ```vector block of the document, as field -> values (in order)."""
    found = []
    for block in re.findall(r"```vector\n(.*?)```", DOC.read_text(), re.S):
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields.setdefault(name, []).append(value)
        found.append(fields)
    return found


VECTORS = vectors()


def one(vector: dict[str, list[str]], name: str) -> str:
    """The single value of a field."""
    (value,) = vector[name]
    return value


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869, written out."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def independent_datagram(vector: dict[str, list[str]]) -> bytes:
    """The datagram built from PROTOCOL.md's prose, without the project's wire module."""
    token = one(vector, "key")
    _, algo, key_id_hex, encoded = token.split(".")
    key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    key_id = bytes.fromhex(key_id_hex)
    assert hashlib.sha256(b"uwsgi-logship key id v1\0" + algo.encode() + b"\0" + key
                          ).digest()[:4] == key_id
    stream = bytes.fromhex(one(vector, "stream id"))
    derived = hkdf_sha256(key, stream, b"uwsgi-logship stream key v1\0" + algo.encode()
                          + b"\0" + key_id, 32)
    assert derived.hex() == one(vector, "stream key")
    app, source = one(vector, "app").encode(), one(vector, "source").encode()
    plain = (int(one(vector, "first line")).to_bytes(8, "big")
             + int(one(vector, "dropped total")).to_bytes(8, "big")
             + bytes((len(app),)) + app + bytes((len(source),)) + source)
    for line in vector.get("line", []):
        plain += b"\x01" + len(line.encode()).to_bytes(2, "big") + line.encode()
    for part in vector.get("part", []):
        head, _, data = part.partition(": ")
        index, _, count = head.partition(" of ")
        body = bytes((int(index), int(count))) + data.encode()
        plain += b"\x02" + len(body).to_bytes(2, "big") + body
    assert plain.hex() == "".join(vector["plaintext"])
    seq = int(one(vector, "sequence")).to_bytes(8, "big")
    header = (b"\x01\x00" + (32 + len(plain) + 16).to_bytes(2, "big") + key_id + stream + seq
              + int(one(vector, "send time")).to_bytes(8, "big"))
    aead = AESGCM(derived) if algo == "aes256gcm" else ChaCha20Poly1305(derived)
    return header + aead.encrypt(b"\0\0\0\0" + seq, plain, header)


def test_the_document_has_vectors() -> None:
    """Both algorithms and both record types are covered."""
    assert len(VECTORS) >= 3
    tokens = " ".join(one(v, "key") for v in VECTORS)
    assert "aes256gcm" in tokens
    assert "chacha20poly1305" in tokens
    assert any("part" in v for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[one(v, "name") for v in VECTORS])
def test_vector_from_the_prose(vector: dict[str, list[str]]) -> None:
    """An implementation of the document's text alone produces the listed datagram."""
    assert independent_datagram(vector).hex() == "".join(vector["datagram"])


@pytest.mark.parametrize("vector", VECTORS, ids=[one(v, "name") for v in VECTORS])
def test_vector_with_the_project_code(vector: dict[str, list[str]]) -> None:
    """The wire module seals the listed datagram, and the decoder reads it back."""
    key = parse_key_token(one(vector, "key"))
    assert f"{key.key_id:08x}" == one(vector, "key id")
    stream = int(one(vector, "stream id"), 16)
    assert stream_key(key, stream).hex() == one(vector, "stream key")
    app, source = one(vector, "app").encode(), one(vector, "source").encode()
    plain = plaintext_head(int(one(vector, "first line")), int(one(vector, "dropped total")),
                           app, source)
    plain += line_records(line.encode() for line in vector.get("line", []))
    for part in vector.get("part", []):
        head, _, data = part.partition(": ")
        index, _, count = head.partition(" of ")
        plain += part_record(int(index), int(count), data.encode())
    micros = int(one(vector, "send time"))
    datagram = seal_datagram(StreamCipher(key, stream), plain, key_id=key.key_id,
                             stream_id=stream, seq=int(one(vector, "sequence")), micros=micros)
    assert datagram.hex() == "".join(vector["datagram"])
    result = NativeDecoder([key]).decode(datagram, "192.0.2.1", micros / 1e6)
    assert isinstance(result, Lines)
    assert (result.app, result.source, result.emitted_at) == (one(vector, "app"),
                                                             one(vector, "source"), micros / 1e6)
    # A lone middle part completes no line; lines come back as listed.
    assert result.lines == vector.get("line", [])
    dropped = int(one(vector, "dropped total"))
    assert result.lost == dropped
    if dropped:
        assert result.markers == (
            f"-- {dropped} lines dropped by the shipper on {one(vector, 'source')} --",)
