"""Per-datagram cost of the crypto decoder alone, by turns over bench/pipeline.py's
datagrams:

- `batch`: `decode_many` over batches of --batch datagrams (one C call each, libcrypto);
- `one`: `decode`, datagram by datagram (a batch of one);
- `compiled`: the cipher of `cryptography` and the compiled crypto_open per datagram
  (the path before batches);
- `pure`: the same with the pure crypto_open (COLLECTOR_PURE_PYTHON's path);
- `5ab9c9a`: the all-Python decoder of 5ab9c9a (tests/support/crypto_reference.py, with
  the compiled line splitter as main had it).

    .venv/bin/python bench/crypto_decode.py --count 20000 --repeat 7
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import SECRET
from bench.pipeline import datagrams
from collector import speedups
from collector.decode.crypto import CryptoDecoder, CryptoKey
from tests.support import crypto_reference
from tests.support.crypto_reference import ReferenceDecoder

NOW = time.time()


class CipherDecoder(CryptoDecoder):
    """The decoder with the cipher of `cryptography` and the compiled checks."""

    _batch = None


class PureDecoder(CryptoDecoder):
    """The decoder with collector.speedups' pure-Python checks."""

    _open = staticmethod(speedups._crypto_open_py)
    _batch = None


def one_pass(kind: type[CryptoDecoder] | type[ReferenceDecoder], data: list[bytes]) -> float:
    """µs per datagram for a fresh decoder over `data` (each accepted once)."""
    decoder = kind([CryptoKey(SECRET, "aes-256-cbc")])
    decode = decoder.decode
    start = time.perf_counter()
    for item in data:
        decode(item, "127.0.0.1", NOW)
    return (time.perf_counter() - start) / len(data) * 1e6


def batch_pass(batches: list[list[tuple[bytes, str]]], count: int) -> float:
    """µs per datagram for a fresh decoder's decode_many over `batches`."""
    decoder = CryptoDecoder([CryptoKey(SECRET, "aes-256-cbc")])
    decode_many = decoder.decode_many
    start = time.perf_counter()
    for batch in batches:
        decode_many(batch, NOW, 65507)
    return (time.perf_counter() - start) / count * 1e6


def main() -> int:
    """Print the best of --repeat passes for each decoder, passes taken by turns."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64,
                        help="datagrams per decode_many call (the listener takes up to 256)")
    args = parser.parse_args()
    # main had the compiled splitter under the old decoder.
    crypto_reference.split_lines = speedups.split_lines  # type: ignore[assignment,attr-defined]
    data = datagrams(args.count)
    batches = [[(item, "127.0.0.1") for item in data[at:at + args.batch]]
               for at in range(0, len(data), args.batch)]
    kinds: dict[str, type[CryptoDecoder] | type[ReferenceDecoder]] = {
        "one": CryptoDecoder, "compiled": CipherDecoder, "pure": PureDecoder,
        "5ab9c9a": ReferenceDecoder}
    best = dict.fromkeys(["batch", *kinds], float("inf"))
    for _ in range(args.repeat):
        best["batch"] = min(best["batch"], batch_pass(batches, len(data)))
        for name, kind in kinds.items():
            best[name] = min(best[name], one_pass(kind, data))
    batched = CryptoDecoder([CryptoKey(SECRET, "aes-256-cbc")]).batched
    print(f"compiled extension: {speedups.COMPILED}, batches in libcrypto: {batched}; "
          f"{args.count} datagrams, batches of {args.batch}, best of {args.repeat}")
    for name, value in best.items():
        print(f"{name:>10}: {value:.2f} µs per datagram")
    return 0


if __name__ == "__main__":
    sys.exit(main())
