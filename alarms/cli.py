"""`collector alarms`: list recent alarms, retry dead letters, try rules offline."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from alarms.notification import RESOLVED
from alarms.offline import Outcome, evaluate
from collector.cli_support import add_client_options
from collector.client.api import ApiClient, resolve
from collector.config.load import load_config
from collector.errors import ConfigError
from logwire.runner import run_async


def _stamp(moment: float | None) -> str:
    if not moment:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_entry(doc: dict[str, Any]) -> str:
    """One alarm as `collector alarms` prints it: a summary line, then the message."""
    state = doc["state"]
    detail = (doc.get("outcome") if state == "delivered" else
              f"silence {doc.get('silence')}" if state == "silenced" else doc.get("last_error"))
    when = ""
    if state == "pending" and doc.get("next_attempt"):
        when = f" next try {_stamp(doc['next_attempt'])}"
    # A resolved notification says so beside its condition ("backlog resolved").
    condition = (f"{doc['condition']} resolved" if doc.get("status") == "resolved"
                 else doc["condition"])
    head = (f"{_stamp(doc['created_at'])}  {state:<9}  {doc['app']}/{doc['alarm']} "
            f"({doc['plugin']})  {condition}  {doc['source']}  "
            f"attempts={doc['attempts']}{when}  {doc['id']}")
    if doc.get("suppressed"):
        head += f"  +{doc['suppressed']} suppressed"
    if detail:
        head += f"  [{detail}]"
    first = doc["message"].split("\n", 1)[0]
    return f"{head}\n    {first}"


async def _list(args: argparse.Namespace, out: TextIO) -> None:
    url, token = resolve(args.url, args.token)
    params = {"limit": str(args.num)}
    for flag in ("pending", "dead", "delivered", "silenced"):
        if getattr(args, flag):
            params["state"] = flag
    if args.app:
        params["app"] = args.app
    async with ApiClient(url, token) as client:
        answer = await client.request_json("GET", "/v1/alarms", params)
    for doc in answer["alarms"]:
        out.write((json.dumps(doc, ensure_ascii=False) if args.json else format_entry(doc))
                  + "\n")


async def _retry(args: argparse.Namespace, out: TextIO) -> None:
    if not args.ids and not args.all_dead:
        raise ConfigError("name the alarm ids to retry, or --dead for every dead letter")
    url, token = resolve(args.url, args.token)
    body = {"dead": True} if args.all_dead else {"ids": args.ids}
    async with ApiClient(url, token) as client:
        answer = await client.request_json("POST", "/v1/alarms/retry", body=body)
    retried = answer["retried"]
    out.write(f"{len(retried)} alarm(s) queued for delivery again\n")
    for alarm_id in retried:
        out.write(f"  {alarm_id}\n")


def run_test(config_path: str, app: str, source: str, lines: TextIO, out: TextIO, *,
             as_json: bool = False) -> Outcome:
    """Evaluate `app`'s rules from the config over `lines`; print what would fire."""
    config = load_config(config_path)
    rules = config.app(app)
    if rules is None:
        known = ", ".join(a.app for a in config.apps) or "none"
        raise ConfigError(f"{config_path} has no [app:{app}] section (apps: {known})")
    outcome = evaluate(rules, (raw.rstrip("\r\n") for raw in lines), source, time.time())
    for n in outcome.notifications:
        if as_json:
            out.write(json.dumps(n.payload(), ensure_ascii=False) + "\n")
            continue
        # A resolved notification (a stateful condition cleared) is told apart.
        word = "resolved" if n.status == RESOLVED else "fire "
        out.write(f"{word} {n.alarm} ({n.plugin})  {n.condition}  {n.source}"
                  + (f"  +{n.suppressed} suppressed before it" if n.suppressed else "")
                  + "\n")
        for text in n.message.split("\n"):
            out.write(f"    {text}\n")
    if not as_json:
        held = ", ".join(f"{alarm}: {count}" for alarm, count in sorted(
            outcome.suppressed.items()))
        out.write(f"-- {outcome.lines} lines, {len(outcome.notifications)} notification(s)"
                  + (f", suppressed by alarm-freq: {held}" if held else "") + " --\n")
    return outcome


def _dispatch(args: argparse.Namespace) -> int:
    command = getattr(args, "alarms_command", None) or "list"
    if command == "test":
        run_test(args.config, args.app, args.source, sys.stdin, sys.stdout, as_json=args.json)
    elif command == "retry":
        run_async(_retry(args, sys.stdout))
    else:
        run_async(_list(args, sys.stdout))
    return 0


def add_commands(commands: Any) -> None:
    """`collector alarms [list|retry|test]`."""
    alarms = commands.add_parser(
        "alarms", help="recent alarms and their delivery; retry; try rules offline",
        description="With no subcommand: list recent alarms, newest first.")
    _list_options(alarms)
    sub = alarms.add_subparsers(dest="alarms_command")
    # A subcommand's defaults would overwrite options given before it (argparse copies the
    # subparser's namespace over the parent's): `collector alarms --url U list` must keep U.
    listing = sub.add_parser("list", help="recent alarms, newest first (the default)",
                             argument_default=argparse.SUPPRESS)
    _list_options(listing)
    retry = sub.add_parser("retry", help="send dead letters again",
                           argument_default=argparse.SUPPRESS)
    retry.add_argument("ids", nargs="*", default=[], help="alarm ids (msg_...)")
    retry.add_argument("--dead", dest="all_dead", action="store_true", default=False,
                       help="every dead letter")
    add_client_options(retry)
    test = sub.add_parser("test", help="evaluate an app's rules over lines on stdin; "
                          "print what would fire (nothing is sent)")
    test.add_argument("--config", required=True, help="the collector's ini file")
    test.add_argument("--app", required=True, help="the [app:NAME] whose rules to use")
    test.add_argument("--source", default="web.1",
                      help="source of plain lines (tail output names its own)")
    test.add_argument("--json", action="store_true", help="one webhook payload per line")
    alarms.set_defaults(func=_dispatch)


def _list_options(parser: argparse.ArgumentParser) -> None:
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--pending", action="store_true", help="only those not yet delivered")
    state.add_argument("--dead", action="store_true", help="only dead letters")
    state.add_argument("--delivered", action="store_true", help="only delivered ones")
    state.add_argument("--silenced", action="store_true",
                       help="only those a silence held back")
    parser.add_argument("--app", help="only this app")
    parser.add_argument("-n", "--num", type=int, default=50, help="at most this many (50)")
    parser.add_argument("--json", action="store_true", help="one JSON document per line")
    add_client_options(parser)
