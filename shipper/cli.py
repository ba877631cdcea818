"""`shipper`: the dyno side: uWSGI config lines, the native sidecar, keys and load generation.

The only place errors become exit codes and messages on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from logwire.address import split_hostport
from logwire.errors import WireError
from logwire.logcrypto import ALGORITHMS
from logwire.native import (
    ALGORITHMS as NATIVE_ALGORITHMS,
)
from logwire.native import (
    DEFAULT_BUDGET,
    MIN_BUDGET,
    NativeKey,
    generate_key,
    parse_key_token,
)
from shipper.errors import ShipperError, UsageError
from shipper.loadgen import encode_crypto, encode_native, encode_socket, make_lines, send_paced
from shipper.uwsgi_config import (
    CRYPTO_ALGOS,
    DEFAULT_SIDECAR_PORT,
    MODES,
    ShipOptions,
    uwsgi_lines,
)


def _key(args: argparse.Namespace) -> NativeKey:
    token = args.key or os.environ.get("LOG_KEY")
    if not token:
        raise ShipperError("no key: set $LOG_KEY (or --key) to a token from `shipper keygen`")
    try:
        return parse_key_token(token)
    except WireError as exc:
        raise UsageError(f"--key/$LOG_KEY: {exc}") from None


def _address(value: str, option: str) -> tuple[str, int]:
    try:
        return split_hostport(value)
    except WireError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _keygen(args: argparse.Namespace) -> int:
    print(generate_key(args.algo).token)
    return 0


def _uwsgi_config(args: argparse.Namespace) -> int:
    options = ShipOptions(collector=args.collector, app=args.app, mode=args.mode,
                          source=args.source, algo=args.algo, secret_var=args.secret_var,
                          listen=args.listen, shipper=args.shipper)
    print("\n".join(uwsgi_lines(options)))
    return 0


def _run(args: argparse.Namespace) -> int:
    parent = os.getppid()
    from logwire.logsetup import configure_logging  # noqa: PLC0415
    from logwire.runner import run_async  # noqa: PLC0415 - keeps the other commands light
    from shipper.sidecar import SidecarConfig, run_sidecar  # noqa: PLC0415

    collector = args.collector or os.environ.get("LOG_COLLECTOR")
    if not collector:
        raise UsageError("--collector HOST:PORT (or $LOG_COLLECTOR) is required")
    if args.budget < MIN_BUDGET:
        raise UsageError(f"--budget must be at least {MIN_BUDGET} bytes")
    if args.max_queue < 1 or args.delay_ms < 0 or args.max_rate < 0:
        raise UsageError("--max-queue must be at least 1, --delay-ms and --max-rate at "
                          "least 0")
    config = SidecarConfig(
        listen=_address(args.listen, "--listen"), collector=_address(collector, "--collector"),
        key=_key(args), app=args.app, source=args.source or os.environ.get("DYNO"),
        budget=args.budget, delay=args.delay_ms / 1000, max_lines=args.max_queue,
        max_rate=args.max_rate, watch_parent=not args.no_watch_parent, parent=parent)
    configure_logging(args.log_level)
    code: int = run_async(run_sidecar(config))
    return code


def _ready(args: argparse.Namespace) -> int:
    from shipper.sidecar import wait_ready  # noqa: PLC0415

    listen = _address(args.listen, "--listen")
    if not wait_ready(listen, args.timeout):
        # Logs are not worth holding the app back: uWSGI starts all the same.
        print(f"shipper: the sidecar on {args.listen} did not answer within "
              f"{args.timeout:g}s; starting without it", file=sys.stderr)
    return 0


def _loadgen(args: argparse.Namespace) -> int:
    host, port = _address(args.target, "--target")
    count = args.count or int(args.rate * args.duration)
    lines = make_lines(count, seed=args.seed)
    if args.format == "crypto":
        if not args.secret:
            raise ShipperError("--format crypto needs --secret (or $LOG_SECRET)")
        datagrams = encode_crypto(lines, args.secret, args.algo, iv=args.iv,
                                  prefix=args.prefix)
    elif args.format == "native":
        datagrams = encode_native(lines, _key(args), args.prefix, budget=args.budget)
    else:
        datagrams = encode_socket(lines, args.prefix)
    # The rate is in lines; a native datagram carries several.
    rate = args.rate * len(datagrams) / max(1, len(lines))
    # Pacing takes `duration` for rate*duration lines; the bound leaves room to finish.
    bound = args.duration * 1.2 + 0.5 if not args.count else args.duration
    report = send_paced(datagrams, (host, port), rate, duration=bound)
    wire = sum(len(d) for d in datagrams[:report.sent])
    sent_lines = round(len(lines) * report.sent / max(1, len(datagrams)))
    print(f"sent {report.sent} datagrams ({sent_lines} lines, {wire} bytes) in "
          f"{report.seconds:.2f}s ({report.rate:.0f}/s), {report.errors} send errors")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole `shipper` command line."""
    parser = argparse.ArgumentParser(prog="shipper", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    config = commands.add_parser("uwsgi-config", help="print the uwsgi.ini lines for a mode")
    config.add_argument("--collector", required=True,
                        help="collector HOST:PORT (or $(VAR), expanded by uWSGI)")
    config.add_argument("--app", required=True, help="the app's name at the collector")
    config.add_argument("--mode", choices=MODES, required=True)
    config.add_argument("--source", default="$(DYNO)",
                        help="the process name (default $(DYNO), Heroku's dyno name)")
    config.add_argument("--algo", choices=CRYPTO_ALGOS, default="aes-256-cbc",
                        help="crypto mode cipher")
    config.add_argument("--secret-var", default="LOG_SECRET",
                        help="environment variable holding the crypto secret")
    config.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_SIDECAR_PORT}",
                        help="native mode: the sidecar's loopback port")
    config.add_argument("--shipper", default="shipper", help="native mode: the command")
    config.set_defaults(func=_uwsgi_config)

    keygen = commands.add_parser("keygen", help="print a new native-format key token")
    keygen.add_argument("--algo", choices=NATIVE_ALGORITHMS, default="aes256gcm")
    keygen.set_defaults(func=_keygen)

    run = commands.add_parser("run", help="the native sidecar (started by attach-daemon)")
    run.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_SIDECAR_PORT}",
                     help="loopback HOST:PORT uWSGI's socket logger sends to")
    run.add_argument("--collector", help="collector HOST:PORT (default $LOG_COLLECTOR)")
    run.add_argument("--key", help="key token (default $LOG_KEY; the environment keeps it "
                     "out of `ps`)")
    run.add_argument("--app", help="app for lines without an APP/SOURCE: prefix")
    run.add_argument("--source", help="source for lines without a prefix (default $DYNO)")
    run.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                     help="largest datagram in bytes (default 1472: no IP fragmentation "
                     "on a 1500-byte MTU)")
    run.add_argument("--delay-ms", type=float, default=20.0,
                     help="longest a line waits for its datagram to fill (default 20)")
    run.add_argument("--max-queue", type=int, default=20_000,
                     help="lines held while sending cannot keep up; the oldest are dropped "
                     "(and counted) beyond this")
    run.add_argument("--max-rate", type=float, default=0.0,
                     help="datagrams per second at most (default 0: no limit)")
    run.add_argument("--no-watch-parent", action="store_true",
                     help="keep running when the parent process goes away")
    run.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                     default="info")
    run.set_defaults(func=_run)

    ready = commands.add_parser("ready", help="wait until the sidecar listens (for uWSGI's "
                                "hook-master-start); always exits 0")
    ready.add_argument("--listen", default=f"127.0.0.1:{DEFAULT_SIDECAR_PORT}")
    ready.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    ready.set_defaults(func=_ready)

    load = commands.add_parser("loadgen", help="send realistic uWSGI lines at a fixed rate")
    load.add_argument("--target", default="127.0.0.1:1717", help="collector HOST:PORT")
    load.add_argument("--format", choices=("crypto", "socket", "native"), default="crypto")
    load.add_argument("--algo", choices=sorted(ALGORITHMS), default="aes-256-cbc")
    load.add_argument("--secret", default=None, help="logcrypto secret (crypto format)")
    load.add_argument("--iv", default=None)
    load.add_argument("--key", default=None, help="key token (native; default $LOG_KEY)")
    load.add_argument("--budget", type=int, default=DEFAULT_BUDGET,
                      help="native datagram size limit")
    load.add_argument("--prefix", default="loadgen/web.1", help="APP/SOURCE prefix")
    load.add_argument("--rate", type=float, default=1000.0, help="lines per second")
    load.add_argument("--duration", type=float, default=10.0,
                      help="seconds of sending at --rate (stops at 1.2x that at the latest); "
                      "with --count, the hard bound")
    load.add_argument("--count", type=int, default=0, help="lines (default rate*duration)")
    load.add_argument("--seed", type=int, default=1)
    load.set_defaults(func=_loadgen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `shipper` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "secret", "") is None:
        args.secret = os.environ.get("LOG_SECRET")
    try:
        code: int = args.func(args)
    except ShipperError as exc:
        print(f"shipper: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return code


if __name__ == "__main__":
    sys.exit(main())
