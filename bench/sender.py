"""A load-sending process for the benchmarks: pre-encodes, waits for "go", sends paced.

Run as `python -m bench.sender`; prints one JSON document with the send report and the
send time of every probe line (every `--probe-every`th line, sent under app `probe` so the
benchmark can follow just those). With `--rare-every N`, one line in N is one of RARE_LINES
(errors an operator would alarm on), each made unique by its sequence number.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from shipper.loadgen import encode_crypto, make_lines, send_paced

RARE_LINES = (
    "Traceback (most recent call last): seq={seq}",
    "django.db.utils.OperationalError: could not connect to server: Connection refused "
    "seq={seq}",
    "redis.exceptions.ConnectionError: Error 111 connecting to cache:6379. Connection "
    "refused. seq={seq}",
    "Wed Nov 25 09:31:31 2026 - *** HARAKIRI ON WORKER 3 (pid: 4242, try: 1) *** seq={seq}",
    "payment {seq} failed: card_declined (stripe) seq={seq}",
)


def bench_datagrams(count: int, secret: str, *, probe_every: int = 100,
                   rare_every: int = 0, micros: int | None = None) -> list[bytes]:
    """The benchmarks' traffic, encrypted: `count` lines of shipper.loadgen's mix, every
    `probe_every`th under app `probe` (prefix `probe/web.1`, the rest `bench/web.1`), and
    with `rare_every` one in that many (never a probe) one of RARE_LINES."""
    lines = make_lines(count)
    datagrams: list[bytes] = []
    step = probe_every
    if rare_every:
        for seq in range(rare_every // 2 + 1, count, rare_every):
            if seq % step:
                text = RARE_LINES[seq // rare_every % len(RARE_LINES)]
                lines[seq] = (text.format(seq=seq) + "\n").encode()
    stamp = time.time_ns() // 1000 if micros is None else micros
    for start in range(0, count, step):
        datagrams += encode_crypto(lines[start:start + 1], secret, prefix="probe/web.1",
                                   micros=stamp + start)
        datagrams += encode_crypto(lines[start + 1:start + step], secret,
                                   prefix="bench/web.1", micros=stamp + start + 1)
    return datagrams


def main() -> int:
    """Encode, wait for a line on stdin, send, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--probe-every", type=int, default=100)
    parser.add_argument("--rare-every", type=int, default=0)
    args = parser.parse_args()
    step = args.probe_every
    datagrams = bench_datagrams(int(args.rate * args.duration), args.secret,
                                probe_every=step, rare_every=args.rare_every)
    print("ready", flush=True)
    sys.stdin.readline()
    report = send_paced(datagrams, ("127.0.0.1", args.port), args.rate,
                        duration=args.duration * 1.5, record_times=True)
    probes = {seq: report.send_times[seq] for seq in range(0, report.sent, step)}
    json.dump({"sent": report.sent, "errors": report.errors, "seconds": report.seconds,
               "probes": probes}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
