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
    count = int(args.rate * args.duration)
    lines = make_lines(count)
    datagrams: list[bytes] = []
    step = args.probe_every
    if args.rare_every:
        for seq in range(args.rare_every // 2 + 1, count, args.rare_every):
            if seq % step:
                text = RARE_LINES[seq // args.rare_every % len(RARE_LINES)]
                lines[seq] = (text.format(seq=seq) + "\n").encode()
    for start in range(0, count, step):
        datagrams += encode_crypto(lines[start:start + 1], args.secret, prefix="probe/web.1")
        datagrams += encode_crypto(lines[start + 1:start + step], args.secret,
                                   prefix="bench/web.1")
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
