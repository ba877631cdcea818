"""The main process's per-line Python work alone, in one process, without sockets.

The same pre-encrypted datagrams bench/sender.py sends (aes-256-cbc logcrypto, uWSGI
request and app lines, one in RARE_EVERY an error some rules match) are handed to a real
`DatagramListener.datagrams_received` in batches of `--batch` (as one wake-up of the
listener reads them; `--single` hands them to `datagram_received` one at a time, the
per-datagram path), with a real `Ingest`, the crypto decoder, the 50
`log-alarm` rules of bench/alarms.py (with `--rules`; their notifications only counted) and
a real `SqliteStore` queue whose frames are encoded but not written. What is left out is
the kernel (recvmsg), uvloop and the store writer: this is the part the Python code decides,
measured as process CPU µs per line, best of `--repeat` passes; steadier than a loaded
collector's figure on a shared machine, so small changes show.

    .venv/bin/python bench/pipeline.py --rules
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alarms.engine import AlarmEngine
from alarms.notification import Notification
from bench.alarms import RARE_EVERY, alarm_section
from bench.harness import CRYPTO_LISTENER, SECRET
from bench.sender import RARE_LINES
from collector.config.load import load_config
from collector.config.model import Config
from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.ingest import Ids, Ingest
from collector.listen.udp import DatagramListener
from collector.store.sqlite import SqliteStore
from shipper.loadgen import encode_crypto, make_lines


def datagrams(count: int) -> list[bytes]:
    """`count` datagrams, one line each, as bench/sender.py makes them."""
    lines = make_lines(count)
    for seq in range(RARE_EVERY // 2 + 1, count, RARE_EVERY):
        lines[seq] = (RARE_LINES[seq // RARE_EVERY % len(RARE_LINES)].format(seq=seq)
                      + "\n").encode()
    return encode_crypto(lines, SECRET, prefix="bench/web.1")


def bench_config(directory: Path) -> Config:
    """bench/alarms.py's config: one crypto listener, the bench app's 50 rules."""
    path = directory / "collector.ini"
    path.write_text(f"[collector]\ndata-dir = {directory}\n\n[listener:bench]\nudp = 127.0.0.1:1\n"
                    f"{CRYPTO_LISTENER}\n{alarm_section('http://127.0.0.1:9')}\n")
    return load_config(path)


async def one_pass(data: list[bytes], rules: bool, store: SqliteStore, config: Config, *,
                   batch: int = 32, single: bool = False) -> float:
    """CPU seconds to take every datagram through the listener (loop callbacks included)."""
    store._loop = asyncio.get_running_loop()  # frames encoded, never written
    fired: list[Notification] = []
    consumers = [AlarmEngine(config.apps, fired.append)] if rules else []
    ingest = Ingest(Ids(), store, consumers)
    listener = DatagramListener(config.listeners[0],
                                CryptoDecoder([CryptoKey(SECRET, "aes-256-cbc")]), ingest)
    addr = ("127.0.0.1", 40000)
    batches = [[(datagram, addr[0]) for datagram in data[first:first + batch]]
               for first in range(0, len(data), batch)]
    gc.collect()
    start = time.process_time()
    # One batch per loop iteration, as one wake-up of the listener reads it, so store
    # frames batch alike.
    for received in batches:
        if single:
            for datagram, _ in received:
                listener.datagram_received(datagram, addr)
        else:
            listener.datagrams_received(received)
        await asyncio.sleep(0)
        store._unacked.clear()
    used = time.process_time() - start
    assert listener.stats.lines == len(data), (listener.stats.lines, listener.stats.dropped)
    return used


async def main_async(args: argparse.Namespace) -> None:
    """Best of `--repeat` passes."""
    data = datagrams(args.lines)
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as workdir:
        config = bench_config(Path(workdir))
        store = SqliteStore(Path(workdir))
        for _ in range(args.repeat):
            best = min(best, await one_pass(data, args.rules, store, config, batch=args.batch,
                                            single=args.single))
    load = os.getloadavg()
    print(f"{1e6 * best / len(data):.2f} CPU µs per line (best of {args.repeat} x "
          f"{len(data)} lines, rules {'50' if args.rules else 'none'}, "
          f"{'one at a time' if args.single else 'batches'} of {args.batch}, load average "
          f"{load[0]:.2f})")


def main() -> int:
    """Parse the options, run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rules", action="store_true")
    parser.add_argument("--batch", type=int, default=32,
                        help="datagrams per loop iteration (per listener wake-up)")
    parser.add_argument("--single", action="store_true",
                        help="hand each datagram to datagram_received on its own")
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
