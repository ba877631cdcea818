"""uWSGI's logcrypto format (`logger = crypto:addr=,algo=,secret=,iv=,prefix=`): the
cipher parameters, key and IV derivation, and the sending side (encrypt, frame), as
plugins/logcrypto/logcrypto.c does them:

- key: the secret's bytes, right-padded with NUL to the cipher's key length (a longer
  secret is cut there, because EVP reads only key-length bytes);
- IV: the `iv` option's bytes right-padded with ASCII '0' to the IV length, so no `iv`
  means sixteen '0' characters for AES and eight for Blowfish; the same IV every datagram;
- plaintext: `<microseconds since the epoch> <space>[<prefix><space>]<message>`;
- CBC with PKCS#7 padding, one datagram per message.

The collector's decoder (collector/decode/crypto.py) builds on these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import Blowfish
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes


@dataclass(frozen=True)
class CipherSpec:
    """Key length and block size as OpenSSL's EVP reports them for the algorithm."""

    key_len: int
    block: int
    make: Callable[[bytes], CipherAlgorithm]


ALGORITHMS: dict[str, CipherSpec] = {
    "aes-128-cbc": CipherSpec(16, 16, algorithms.AES),
    "aes-192-cbc": CipherSpec(24, 16, algorithms.AES),
    "aes-256-cbc": CipherSpec(32, 16, algorithms.AES),
    # EVP_CIPHER_key_length(EVP_bf_cbc()) is 16 although Blowfish takes up to 56 bytes.
    "bf-cbc": CipherSpec(16, 8, Blowfish),
}



def derive_key(secret: str | bytes, algo: str) -> bytes:
    """The key EVP is given: the secret NUL-padded or cut to the key length."""
    raw = secret.encode() if isinstance(secret, str) else secret
    length = ALGORITHMS[algo].key_len
    return raw[:length].ljust(length, b"\0")


def derive_iv(iv: str | bytes | None, algo: str) -> bytes:
    """The IV EVP is given: the `iv` option padded with ASCII '0' or cut to the block."""
    raw = (iv.encode() if isinstance(iv, str) else iv) or b""
    length = ALGORITHMS[algo].block
    return raw[:length].ljust(length, b"0")


def encrypt(plaintext: bytes, secret: str | bytes, algo: str, iv: str | bytes | None = None
            ) -> bytes:
    """Encrypt one message as logcrypto does (used by the load generator and tests)."""
    spec = ALGORITHMS[algo]
    pad = spec.block - len(plaintext) % spec.block
    encryptor = Cipher(spec.make(derive_key(secret, algo)),
                       modes.CBC(derive_iv(iv, algo))).encryptor()
    return encryptor.update(plaintext + bytes([pad]) * pad) + encryptor.finalize()


def frame(message: bytes, micros: int, prefix: bytes | None = None) -> bytes:
    """The plaintext logcrypto encrypts for `message` logged at `micros`."""
    head = b"%d " % micros
    return head + prefix + b" " + message if prefix else head + message
