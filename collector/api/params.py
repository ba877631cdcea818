"""Query-string parsing for /v1/logs; returns an error text instead of raising."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collector.query import LogQuery
from collector.regex import regex_error
from collector.timespec import parse_time

MAX_LIMIT = 10_000


@dataclass(frozen=True)
class LogsRequest:
    """A parsed /v1/logs request."""

    query: LogQuery
    follow: bool


def parse_logs_params(params: Mapping[str, str]) -> LogsRequest | str:
    """The request, or the text of a 400 answer."""
    times: dict[str, float | None] = {"since": None, "until": None}
    for name in ("since", "until"):
        if params.get(name):
            moment = parse_time(params[name])
            if moment is None:
                return f"{name}: expected Unix seconds, ISO 8601 or a duration such as 15m"
            times[name] = moment
    numbers: dict[str, int | None] = {"status": None, "after": None, "limit": 100}
    for name in numbers:
        raw = params.get(name) or (params.get("n") if name == "limit" else None)
        if raw:
            try:
                numbers[name] = int(raw)
            except ValueError:
                return f"{name}: expected a whole number, got {raw!r}"
    limit = numbers["limit"] or 0
    if not 0 <= limit <= MAX_LIMIT:
        return f"limit: must be between 0 and {MAX_LIMIT}"
    regex = params.get("regex") or None
    if regex is not None:
        error = regex_error(regex)
        if error:
            return f"regex: {error}"
    follow = params.get("follow", "") in {"1", "true", "yes"}
    query = LogQuery(app=params.get("app") or None, source=params.get("source") or None,
                     since=times["since"], until=times["until"], regex=regex,
                     status=numbers["status"], after=numbers["after"], limit=limit)
    return LogsRequest(query, follow)
