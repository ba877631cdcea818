"""GET /v1/stats/volume: matching lines per interval, stacked by status class.

Counts are by receipt time (the record id), as `since` and `until` filter everywhere
else. `status` takes an exact code (`503`) or a class (`5xx`); a line without a status
(not a request line) counts under `other`, as do 1xx lines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from collector.api.params import given_values, line_filters, moment, shown
from collector.api.scan import capped, scan
from collector.query import LogQuery
from collector.server.context import CONTEXT
from collector.timespec import duration_seconds

VOLUME_PARAMS = frozenset({"since", "until", "step", "app", "source", "status", "regex"})
CLASSES = ("2xx", "3xx", "4xx", "5xx", "other")
MAX_BUCKETS = 1000
# Steps the automatic choice picks from: about TARGET_BUCKETS intervals per range.
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
               21600, 43200, 86400, 172800, 604800)
TARGET_BUCKETS = 60
DEFAULT_RANGE = 3600.0
# A volume request reads at most this many records; past it the answer says `truncated`.
MAX_SCAN = 200_000


@dataclass(frozen=True)
class VolumeRequest:
    """A parsed /v1/stats/volume request."""

    query: LogQuery
    since: float
    until: float
    step: float


def status_class(status: int | None) -> str:
    """The stack a line counts in: `2xx` to `5xx`, or `other`."""
    if status is None or not 200 <= status < 600:
        return "other"
    return f"{status // 100}xx"


def auto_step(span: float) -> float:
    """A round interval giving about TARGET_BUCKETS buckets over `span` seconds."""
    for step in _NICE_STEPS:
        if span / step <= TARGET_BUCKETS:
            return float(step)
    return float(math.ceil(span / TARGET_BUCKETS))


def parse_volume_params(params: Mapping[str, str], now: float | None = None
                        ) -> VolumeRequest | str:
    """The request, or the text of a 400 answer. An empty value counts as not given."""
    given = given_values(params, VOLUME_PARAMS)
    if isinstance(given, str):
        return given
    current = time.time() if now is None else now
    until = current
    if "until" in given:
        parsed = moment("until", given["until"])
        if isinstance(parsed, str):
            return parsed
        until = parsed
    since = until - DEFAULT_RANGE
    if "since" in given:
        parsed = moment("since", given["since"])
        if isinstance(parsed, str):
            return parsed
        since = parsed
    if since >= until:
        return f"since: must be before until ({since:.6f} >= {until:.6f})"
    span = until - since
    if "step" in given:
        step = duration_seconds(given["step"])
        if step is None or step <= 0:
            return (f"step: expected a duration such as 10s, 1m or 1h, got "
                    f"{shown(given['step'])}")
        if span / step > MAX_BUCKETS:
            return (f"step: {shown(given['step'])} makes {math.ceil(span / step)} "
                    f"intervals over the range; at most {MAX_BUCKETS}")
    else:
        step = auto_step(span)
    filters = line_filters(given)
    if isinstance(filters, str):
        return filters
    query = LogQuery(app=given.get("app"), source=given.get("source"), since=since,
                     until=until, regex=filters.regex, status=filters.status,
                     status_class=filters.status_class)
    return VolumeRequest(query, since, until, step)


async def get_volume(request: web.Request) -> web.Response:
    """Counts per interval and status class for the filters and range given."""
    parsed = parse_volume_params(request.query)
    if isinstance(parsed, str):
        return web.json_response({"error": parsed}, status=400)
    context = request.app[CONTEXT]
    buckets = max(1, math.ceil((parsed.until - parsed.since) / parsed.step))
    series = {name: [0] * buckets for name in CLASSES}
    start_us = int(parsed.since * 1e6)
    step_us = parsed.step * 1e6
    seen = 0
    async for page in scan(context.store, parsed.query, MAX_SCAN):
        seen += len(page)
        for record in page:
            index = min(int((record.id - start_us) // step_us), buckets - 1)
            series[status_class(record.status)][index] += 1
    body: dict[str, Any] = {
        "since": parsed.since, "until": parsed.until, "step": parsed.step,
        "times": [parsed.since + i * parsed.step for i in range(buckets)],
        "series": series, "total": sum(sum(counts) for counts in series.values()),
        "truncated": capped(seen, MAX_SCAN),
    }
    return web.json_response(body)
