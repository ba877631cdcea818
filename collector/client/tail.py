"""`collector tail`: recent lines, and with -f the live stream, like `heroku logs --tail`.

The client remembers the id of the last line it printed; when the stream breaks (the
collector restarts, the network blips) it reconnects asking for lines after that id, so
the output has no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import json
import sys
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from collector.client.api import ApiClient, ApiUnavailable
from collector.record import Record

_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)
_MAX_BACKOFF = 5.0


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


def format_line(record: Record, colour: bool) -> str:
    """`2026-11-24T20:00:00.123456+00:00 app[web.1]: line`, as Heroku prints it."""
    moment = record.emitted_at if record.emitted_at is not None else record.received_at
    stamp = datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")
    origin = f"{record.app}[{record.source}]"
    if not colour:
        return f"{stamp} {origin}: {record.line}"
    hue = _COLOURS[zlib.crc32(origin.encode()) % len(_COLOURS)]
    text = record.line
    if record.kind == "marker":
        text = f"\x1b[1;33m{text}\x1b[0m"
    elif record.status is not None and record.status >= 500:
        text = f"\x1b[31m{text}\x1b[0m"
    return f"\x1b[2m{stamp}\x1b[0m \x1b[{hue}m{origin}:\x1b[0m {text}"


class Printer:
    """Writes records and remembers the last id written."""

    def __init__(self, out: TextIO, as_json: bool, colour: bool) -> None:
        self._out = out
        self._json = as_json
        self._colour = colour
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
            self._out.write(json.dumps(doc, ensure_ascii=False) + "\n")
        else:
            self._out.write(format_line(Record.from_json(doc), self._colour) + "\n")
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
    printer = Printer(out, options.json, options.colour)
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
