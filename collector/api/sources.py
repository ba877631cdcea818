"""GET /v1/sources: every app/source that logged in a recent window, with its last line,
lines per minute (for a sparkline) and whether it has gone silent."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from collector.api.params import given_values, shown
from collector.api.scan import capped, scan
from collector.query import LogQuery
from collector.record import Record
from collector.server.context import CONTEXT
from collector.timespec import duration_seconds

SOURCES_PARAMS = frozenset({"window", "silent", "app"})
DEFAULT_WINDOW = 3600.0
MAX_WINDOW = 6 * 3600.0
DEFAULT_SILENT = 300.0
MINUTE = 60.0
MAX_SCAN = 200_000


@dataclass(frozen=True)
class SourcesRequest:
    """A parsed /v1/sources request."""

    app: str | None
    window: float
    silent: float


@dataclass
class _Seen:
    lines: int
    per_minute: list[int]
    last: Record | None = None
    hosts: set[str] = field(default_factory=set)


def _duration(name: str, raw: str, high: float) -> float | str:
    value = duration_seconds(raw)
    if value is None or not 0 < value <= high:
        return (f"{name}: expected a duration from 1s to {high / 3600:g}h such as 15m, "
                f"got {shown(raw)}")
    return value


def parse_sources_params(params: Mapping[str, str]) -> SourcesRequest | str:
    """The request, or the text of a 400 answer. An empty value counts as not given."""
    given = given_values(params, SOURCES_PARAMS)
    if isinstance(given, str):
        return given
    window = _duration("window", given["window"], MAX_WINDOW) if "window" in given \
        else DEFAULT_WINDOW
    if isinstance(window, str):
        return window
    silent = _duration("silent", given["silent"], MAX_WINDOW) if "silent" in given \
        else DEFAULT_SILENT
    if isinstance(silent, str):
        return silent
    return SourcesRequest(given.get("app"), window, silent)


async def get_sources(request: web.Request) -> web.Response:
    """Sources by app, each with its counts over the window; silent ones flagged."""
    parsed = parse_sources_params(request.query)
    if isinstance(parsed, str):
        return web.json_response({"error": parsed}, status=400)
    context = request.app[CONTEXT]
    now = time.time()
    since = now - parsed.window
    minutes = math.ceil(parsed.window / MINUTE)
    start_us = int(since * 1e6)
    found: dict[tuple[str, str], _Seen] = {}
    scanned = 0
    query = LogQuery(app=parsed.app, since=since, until=None)
    async for page in scan(context.store, query, MAX_SCAN):
        scanned += len(page)
        for record in page:
            if record.kind != "log":
                continue
            key = (record.app, record.source)
            seen = found.get(key)
            if seen is None:
                seen = found[key] = _Seen(0, [0] * minutes)
            seen.lines += 1
            index = min(max(int((record.id - start_us) // (MINUTE * 1e6)), 0), minutes - 1)
            seen.per_minute[index] += 1
            seen.last = record
            if len(seen.hosts) < 8:
                seen.hosts.add(record.host)
    sources: list[dict[str, Any]] = []
    for (app, source), seen in sorted(found.items()):
        last = seen.last
        assert last is not None  # a source is only recorded with a line
        sources.append({
            "app": app, "source": source, "lines": seen.lines,
            "per_minute": seen.per_minute, "hosts": sorted(seen.hosts),
            "last_seen": last.received_at, "last_line": last.line,
            "silent": now - last.received_at >= parsed.silent,
        })
    return web.json_response({"window": parsed.window, "silent_after": parsed.silent,
                              "since": since, "sources": sources,
                              "truncated": capped(scanned, MAX_SCAN)},
                             dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
