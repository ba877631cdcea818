"""`collector tail`: recent lines, and with -f the live stream, like `heroku logs --tail`.

The client remembers the id of the last line it printed; when the stream breaks (the
collector restarts, the network blips) it reconnects asking for lines after that id, so
the output has no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from collector.client.api import ApiClient, ApiUnavailable
from collector.record import Record

_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
_MAX_BACKOFF = 5.0
# What a terminal may act on rather than show: C0 controls but tab, DEL, the C1 controls
# (U+009B is an 8-bit CSI), the Unicode line separators and the bidi overrides and
# isolates (they reorder what follows them on the screen).
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                     r"\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


@dataclass(frozen=True)
class TailOptions:
    """What `collector tail` was asked for."""

    url: str
    token: str | None
    lines: int = 100
    follow: bool = False
    app: str | None = None
    source: str | None = None
    grep: str | None = None
    since: str | None = None
    json: bool = False
    colour: bool = False
    raw: bool = False


def escape_controls(text: str) -> str:
    """`text` with every character a terminal would act on written as a visible escape
    (`\\x1b`, `\\n`, `\\u202e`), so that a log line cannot move the cursor, recolour,
    retitle or clear the terminal of whoever tails it."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_one, text)


def _escape_one(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_json_controls(text: str) -> str:
    """A JSON text with the same escapes applied inside its strings (`\\u001b` form), so
    that it still parses to the same value. json.dumps escapes C0 controls already but,
    with ensure_ascii off, leaves DEL, C1 and the bidi controls as they are."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def format_line(record: Record, colour: bool, raw: bool = False) -> str:
    """`2026-11-24T20:00:00.123456+00:00 app[web.1]: line`, as Heroku prints it.

    App, source and line come from senders: their control characters are escaped unless
    `raw`.
    """
    moment = record.emitted_at if record.emitted_at is not None else record.received_at
    stamp = _stamp(moment)
    clean = (lambda text: text) if raw else escape_controls
    origin = f"{clean(record.app)}[{clean(record.source)}]"
    text = clean(record.line)
    if not colour:
        return f"{stamp} {origin}: {text}"
    hue = _COLOURS[zlib.crc32(origin.encode()) % len(_COLOURS)]
    if record.kind == "marker":
        text = f"\x1b[1;33m{text}\x1b[0m"
    elif record.status is not None and record.status >= 500:
        text = f"\x1b[31m{text}\x1b[0m"
    return f"\x1b[2m{stamp}\x1b[0m \x1b[{hue}m{origin}:\x1b[0m {text}"


def _stamp(moment: float) -> str:
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")
    except (ValueError, OverflowError, OSError):
        # A sender's clock can claim any time at all; print it rather than fail the tail.
        return f"@{moment}"


class Printer:
    """Writes records and remembers the last id written."""

    def __init__(self, out: TextIO, as_json: bool, colour: bool, raw: bool = False) -> None:
        self._out = out
        self._json = as_json
        self._colour = colour
        self._raw = raw
        self.last_id: int | None = None

    def write(self, doc: dict[str, Any]) -> None:
        """Print one record document from the API (a cursor line only moves the position)."""
        if "cursor" in doc:
            cursor = int(doc["cursor"])
            if self.last_id is None or cursor > self.last_id:
                self.last_id = cursor
            return
        record_id = int(doc["id"])
        if self.last_id is not None and record_id <= self.last_id:
            return
        if self._json:
            text = json.dumps(doc, ensure_ascii=False)
            self._out.write((text if self._raw else escape_json_controls(text)) + "\n")
        else:
            self._out.write(format_line(Record.from_json(doc), self._colour, self._raw)
                            + "\n")
        self.last_id = record_id

    def flush(self) -> None:
        """Flush the output (each batch reaches a pipe at once)."""
        self._out.flush()


def _params(options: TailOptions) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in (("app", options.app), ("source", options.source),
                       ("regex", options.grep), ("since", options.since)):
        if value:
            params[key] = value
    return params


async def run_tail(options: TailOptions, out: TextIO = sys.stdout,
                   err: TextIO = sys.stderr) -> None:
    """Print the last lines; with follow, keep printing until interrupted."""
    printer = Printer(out, options.json, options.colour, options.raw)
    async with ApiClient(options.url, options.token) as client:
        if not options.follow:
            answer = await client.request_json(
                "GET", "/v1/logs", {**_params(options), "limit": str(options.lines)})
            for doc in answer["records"]:
                printer.write(doc)
            printer.flush()
            return
        await _follow(client, options, printer, err)


async def _follow(client: ApiClient, options: TailOptions, printer: Printer,
                  err: TextIO) -> None:
    backoff = 0.2
    lost = False
    while True:
        params = {**_params(options), "follow": "1"}
        if printer.last_id is not None:
            params["after"] = str(printer.last_id)
        else:
            params["limit"] = str(options.lines)
        try:
            async for doc in client.stream("/v1/logs", params):
                if lost:
                    err.write("-- reconnected --\n")
                    lost = False
                backoff = 0.2
                printer.write(doc)
                printer.flush()
        except ApiUnavailable as exc:
            # Before the first answer the collector is simply not there: say so and stop.
            # After it, the stream's cursor is known and waiting for it to return is right.
            if printer.last_id is None:
                raise
            if not lost:
                err.write(f"-- connection lost ({exc}); reconnecting --\n")
                err.flush()
                lost = True
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF)
