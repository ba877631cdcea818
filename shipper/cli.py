"""`shipper`: the dyno side (load generation for now; config, sidecar and keys follow)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from collector.config.units import parse_hostport
from collector.decode.crypto import ALGORITHMS
from collector.errors import CollectorError, Location
from shipper.loadgen import encode_crypto, encode_socket, make_lines, send_paced


def _loadgen(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.target, Location("--target", 0))
    count = args.count or int(args.rate * args.duration)
    lines = make_lines(count, seed=args.seed)
    if args.format == "crypto":
        if not args.secret:
            raise CollectorError("--format crypto needs --secret (or $LOG_SECRET)")
        datagrams = encode_crypto(lines, args.secret, args.algo, iv=args.iv,
                                  prefix=args.prefix)
    else:
        datagrams = encode_socket(lines, args.prefix)
    report = send_paced(datagrams, (host, port), args.rate, duration=args.duration)
    print(f"sent {report.sent} datagrams in {report.seconds:.2f}s "
          f"({report.rate:.0f}/s), {report.errors} send errors")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole `shipper` command line."""
    parser = argparse.ArgumentParser(prog="shipper", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("loadgen", help="send realistic uWSGI lines at a fixed rate")
    load.add_argument("--target", default="127.0.0.1:1717", help="collector HOST:PORT")
    load.add_argument("--format", choices=("crypto", "socket"), default="crypto")
    load.add_argument("--algo", choices=sorted(ALGORITHMS), default="aes-256-cbc")
    load.add_argument("--secret", default=None, help="logcrypto secret (crypto format)")
    load.add_argument("--iv", default=None)
    load.add_argument("--prefix", default="loadgen/web.1", help="APP/SOURCE prefix")
    load.add_argument("--rate", type=float, default=1000.0, help="lines per second")
    load.add_argument("--duration", type=float, default=10.0, help="seconds (bound)")
    load.add_argument("--count", type=int, default=0, help="lines (default rate*duration)")
    load.add_argument("--seed", type=int, default=1)
    load.set_defaults(func=_loadgen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `shipper` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "secret", "") is None:
        import os  # noqa: PLC0415

        args.secret = os.environ.get("LOG_SECRET")
    try:
        code: int = args.func(args)
    except CollectorError as exc:
        print(f"shipper: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
