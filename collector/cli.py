"""`collector`: serve, tail, check-config (and the alarms commands).

The only place errors become exit codes and messages on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from alarms.cli import add_commands as add_alarms_commands
from alarms.silence_cli import add_commands as add_silence_commands
from collector.cli_support import add_client_options
from collector.client.api import resolve
from collector.client.cluster import run_status
from collector.client.tail import TailOptions, run_tail
from collector.config.load import load_config, load_default_config
from collector.config.model import Config
from collector.errors import CollectorError
from logwire.logsetup import configure_logging
from logwire.runner import run_async


def read_config(path: str | None, data_dir: str | None = None) -> Config:
    """The config file's Config, or the embedded default when no file is named."""
    if path is None:
        return load_default_config(Path(data_dir or "./data"))
    return load_config(path)


def config_loader(path: str | None, data_dir: str | None = None) -> Callable[[], Config]:
    """How `serve` reads its Config, at start and again on each SIGHUP.

    A named file is read anew each time, with `--data-dir` applied over it; the embedded
    default is built once and reloads as itself.
    """
    if path is None:
        default = read_config(None, data_dir)
        return lambda: default

    def load() -> Config:
        config = load_config(path)
        if data_dir:
            config = replace(config, store=replace(config.store, data_dir=Path(data_dir)))
        return config

    return load


def _serve(args: argparse.Namespace) -> int:
    from collector import speedups  # noqa: PLC0415 - light `tail`
    from collector.server import gcpolicy  # noqa: PLC0415 - light `tail`
    from collector.server.server import HangupLatch, serve  # noqa: PLC0415 - light `tail`

    latch = HangupLatch.install()
    load = config_loader(args.config, args.data_dir)
    config = load()
    configure_logging(config.log_level, config.log_format)
    speedups.log_start_up()
    # Printed, not logged: a secret has no place in a log, but the operator who started
    # the embedded default needs it to configure uWSGI.
    for notice in config.notices:
        print(notice, file=sys.stderr, flush=True)
    # Here, not in serve(): the process's own policy, not a side effect on whoever runs
    # serve() (tests run it in their process).
    gcpolicy.apply()
    run_async(serve(config, load, latch))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    listeners = len(config.listeners) + len(config.drains)
    print(f"{args.config}: ok ({listeners} listeners, {len(config.apps)} apps)")
    return 0


def _tail(args: argparse.Namespace) -> int:
    url, token = resolve(args.url, args.token)
    colour = {"always": True, "never": False}.get(args.color, sys.stdout.isatty()
                                                  and not os.environ.get("NO_COLOR"))
    options = TailOptions(url=url, token=token, lines=args.num, follow=args.follow,
                          app=args.app, source=args.source, grep=args.grep,
                          since=args.since, json=args.json, colour=colour, raw=args.raw)
    try:
        run_async(run_tail(options))
    except KeyboardInterrupt:
        return 0
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    url, token = resolve(args.url, args.token)
    code: int = run_async(run_status(url, token, args.json, sys.stdout))
    return code


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(prog="collector", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the collector")
    serve.add_argument("--config", help="ini file (default: the embedded default config)")
    serve.add_argument("--data-dir", help="data directory (overrides the config's)")
    serve.set_defaults(func=_serve)

    check = commands.add_parser("check-config", help="load a config file and report errors")
    check.add_argument("--config", required=True)
    check.set_defaults(func=_check_config)

    tail = commands.add_parser("tail", help="show recent log lines; -f to follow")
    tail.add_argument("-n", "--num", type=int, default=100, help="lines of backlog (100)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep streaming")
    tail.add_argument("--app", help="only this app")
    tail.add_argument("--source", help="only this source (dyno), e.g. web.1")
    tail.add_argument("--grep", help="only lines matching this regular expression (RE2)")
    tail.add_argument("--since", help="only lines since: 15m, 2h, ISO 8601, Unix seconds")
    tail.add_argument("--json", action="store_true", help="one JSON record per line")
    tail.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    tail.add_argument("--raw", action="store_true", help="print control characters from "
                      "log lines as they are (default: escaped, e.g. \\x1b)")
    add_client_options(tail)
    tail.set_defaults(func=_tail)

    cluster = commands.add_parser("cluster", help="the cluster's nodes, NATS servers and "
                                  "streams (cluster mode)")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True)
    status = cluster_commands.add_parser(
        "status", help="nodes, NATS servers, streams, consumers; exit 1 when unhealthy")
    status.add_argument("--json", action="store_true", help="the status as one JSON document")
    add_client_options(status)
    status.set_defaults(func=_cluster_status)

    add_alarms_commands(commands)
    add_silence_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `collector` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CollectorError as exc:
        print(f"collector: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
