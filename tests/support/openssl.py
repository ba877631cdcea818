"""Ciphertext made independently of our code, by the `openssl enc` command."""

from __future__ import annotations

import shutil
import subprocess

# Key and IV lengths as EVP reports them (logcrypto pads to these).
LENGTHS = {"aes-128-cbc": (16, 16), "aes-192-cbc": (24, 16), "aes-256-cbc": (32, 16),
           "bf-cbc": (16, 8)}


def openssl_encrypt(plaintext: bytes, secret: bytes, algo: str, iv: bytes | None) -> bytes:
    """Encrypt as uWSGI's logcrypto would, but with OpenSSL's own command-line tool.

    Key: the secret NUL-padded to the key length; IV: the iv '0'-padded to the block.
    OpenSSL 3 keeps Blowfish in its legacy provider, hence the provider flags for bf-cbc.
    """
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed (make test installs it)"
    key_len, iv_len = LENGTHS[algo]
    key = secret[:key_len].ljust(key_len, b"\0")
    vector = (iv or b"")[:iv_len].ljust(iv_len, b"0")
    providers = ["-provider", "legacy", "-provider", "default"] if algo == "bf-cbc" else []
    done = subprocess.run(
        [openssl, "enc", f"-{algo}", *providers, "-K", key.hex(), "-iv", vector.hex()],
        input=plaintext, capture_output=True, check=True, timeout=10)
    return done.stdout
