"""A load-sending process for the benchmarks: pre-encodes, waits for "go", sends paced.

Run as `python -m bench.sender`; prints one JSON document with the send report and the
send time of every probe line (every `--probe-every`th line, sent under app `probe` so the
benchmark can follow just those).
"""

from __future__ import annotations

import argparse
import json
import sys

from shipper.loadgen import encode_crypto, make_lines, send_paced


def main() -> int:
    """Encode, wait for a line on stdin, send, report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--probe-every", type=int, default=100)
    args = parser.parse_args()
    count = int(args.rate * args.duration)
    lines = make_lines(count)
    datagrams: list[bytes] = []
    step = args.probe_every
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
