"""`collector silence add|list|expire`: silences over a running collector's API."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from collector.cli_support import add_client_options
from collector.client.api import ApiClient, resolve
from logwire.runner import run_async


def _stamp(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No user name for this uid (a bare container): say so rather than fail.
        return "unknown"


def add_body(args: argparse.Namespace) -> dict[str, Any]:
    """The `POST /v1/silences` body for `collector silence add`'s options."""
    body: dict[str, Any] = {"app": args.app, "comment": args.comment,
                            "created_by": args.by or _user()}
    for name in ("alarm", "source", "condition", "match"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.duration is not None:
        body["for"] = args.duration
    else:
        body["until"] = args.until
    return body


def format_silence(doc: dict[str, Any]) -> str:
    """One silence as `collector silence list` prints it."""
    matchers = " ".join(f"{name}={doc[name]!r}" if name in ("source", "match")
                        else f"{name}={doc[name]}"
                        for name in ("app", "alarm", "source", "condition", "match")
                        if doc.get(name) is not None)
    state = ("active" if doc.get("active") else
             f"expired by {doc['expired_by']}" if doc.get("expired_at") else "ended")
    return (f"{doc['id']}  {state}  {_stamp(doc['starts_at'])} .. {_stamp(doc['ends_at'])}"
            f"  {matchers}  by {doc['created_by']}: {doc['comment']}")


async def _add(args: argparse.Namespace, out: TextIO) -> None:
    url, token = resolve(args.url, args.token)
    async with ApiClient(url, token) as client:
        answer = await client.request_json("POST", "/v1/silences", body=add_body(args))
    out.write(f"{answer['id']}\n")


async def _list(args: argparse.Namespace, out: TextIO) -> None:
    url, token = resolve(args.url, args.token)
    params = {"all": "1"} if args.all else {}
    async with ApiClient(url, token) as client:
        answer = await client.request_json("GET", "/v1/silences", params)
    for doc in answer["silences"]:
        out.write((json.dumps(doc, ensure_ascii=False) if args.json else format_silence(doc))
                  + "\n")


async def _expire(args: argparse.Namespace, out: TextIO) -> None:
    url, token = resolve(args.url, args.token)
    async with ApiClient(url, token) as client:
        answer = await client.request_json(
            "DELETE", f"/v1/silences/{args.id}", {"by": args.by or _user()})
    out.write(f"expired {answer['id']}\n")


def _dispatch(args: argparse.Namespace) -> int:
    command = {"add": _add, "list": _list, "expire": _expire}[args.silence_command]
    run_async(command(args, sys.stdout))
    return 0


def add_commands(commands: Any) -> None:
    """`collector silence add|list|expire`."""
    silence = commands.add_parser(
        "silence", help="hold back matching alarms for a while (add, list, expire)")
    sub = silence.add_subparsers(dest="silence_command", required=True)
    add = sub.add_parser("add", help="silence matching alarms; prints the silence's id")
    add.add_argument("--app", required=True, help="the app whose alarms to hold back")
    add.add_argument("--alarm", help="only this alarm (its name in the config)")
    add.add_argument("--source", help="only sources matching this regular expression (RE2)")
    add.add_argument("--condition", help="only this condition (e.g. log, segfault)")
    add.add_argument("--match", help="only messages matching this regular expression (RE2)")
    until = add.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="duration", help="how long: 30m, 2h, 1d")
    until.add_argument("--until", help="until when: ISO 8601 or Unix seconds")
    add.add_argument("--comment", required=True, help="why (logged and listed)")
    add.add_argument("--by", help="who (default: your user name)")
    add_client_options(add)
    listing = sub.add_parser("list", help="active silences, newest first")
    listing.add_argument("--all", action="store_true",
                         help="also those ended or expired (kept for 7 days)")
    listing.add_argument("--json", action="store_true", help="one JSON document per line")
    add_client_options(listing)
    expire = sub.add_parser("expire", help="end a silence now")
    expire.add_argument("id", help="the silence's id (sil_...)")
    expire.add_argument("--by", help="who (default: your user name)")
    add_client_options(expire)
    silence.set_defaults(func=_dispatch)
