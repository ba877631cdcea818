"""Query-string checking for the API; returns an error text instead of raising.

Every parameter is checked for form and range before anything uses it, and an error names
the parameter and shows (the start of) what was given, so that no value a caller can send
reaches the store or the regex engine unchecked. Parameters an endpoint does not take are
refused, not ignored: a misspelt filter would otherwise silently widen the answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from multidict import MultiMapping

from collector.query import LogQuery
from collector.regex import regex_error
from collector.timespec import parse_time

MAX_LIMIT = 10_000
# A grep pattern, not a program: RE2 needs memory and time in proportion to its size.
MAX_REGEX_BYTES = 4096
# Record ids are microseconds since the epoch; this one is in the year 148,000 and leaves
# room for `after + 1` in SQLite's 64-bit integers.
MAX_ID = 2**62
# Times are Unix seconds from the epoch to the end of the year 9999.
MAX_TIME = 253_402_300_800.0
STATUS_RANGE = (100, 999)
LOGS_PARAMS = frozenset({"app", "source", "since", "until", "regex", "status", "after",
                         "limit", "n", "follow"})
_WHOLE = re.compile(r"-?[0-9]{1,20}")
_STATUS_CLASS = re.compile(r"([1-9])xx")
_YES = frozenset({"1", "true", "yes"})
_NO = frozenset({"0", "false", "no"})
_SHOWN = 40


@dataclass(frozen=True)
class LogsRequest:
    """A parsed /v1/logs request."""

    query: LogQuery
    follow: bool


def shown(raw: str) -> str:
    """A given value as an error message quotes it: repr'd, and cut if long."""
    return repr(raw) if len(raw) <= _SHOWN else f"{raw[:_SHOWN]!r}... ({len(raw)} characters)"


def names_problem(params: Mapping[str, str], known: Collection[str]) -> str | None:
    """Why the parameter names are wrong (unknown, or given twice), or None."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        takes = (f"this endpoint takes {', '.join(sorted(known))}" if known
                 else "this endpoint takes no parameters")
        listed = ", ".join(shown(name) for name in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        plural = "s" if len(unknown) > 1 else ""
        return f"unknown parameter{plural} {listed}{more}; {takes}"
    if isinstance(params, MultiMapping):
        for name in sorted(set(params)):
            if len(params.getall(name)) > 1:
                return f"{name}: given more than once"
    return None


def whole_number(name: str, raw: str, low: int, high: int) -> int | str:
    """`raw` as an integer in [low, high], or the text of a 400 answer."""
    if _WHOLE.fullmatch(raw) is not None:
        value = int(raw)
        if low <= value <= high:
            return value
    return f"{name}: expected a whole number from {low} to {high}, got {shown(raw)}"


def moment(name: str, raw: str) -> float | str:
    """`raw` as Unix seconds (see timespec), or the text of a 400 answer."""
    value = parse_time(raw)
    if value is None:
        return (f"{name}: expected a time (Unix seconds, ISO 8601 or a duration such as "
                f"15m), got {shown(raw)}")
    if not (math.isfinite(value) and 0 <= value < MAX_TIME):
        return f"{name}: {shown(raw)} is not between 1970 and the year 9999"
    return value


def flag(name: str, raw: str) -> bool | str:
    """A yes/no parameter, or the text of a 400 answer."""
    word = raw.lower()
    if word in _YES or word in _NO:
        return word in _YES
    return f"{name}: expected 1, true, yes, 0, false or no, got {shown(raw)}"


def regex(name: str, raw: str) -> str | None:
    """Why `raw` is not an acceptable RE2 pattern (too long or invalid), or None."""
    size = len(raw.encode())
    if size > MAX_REGEX_BYTES:
        return f"{name}: at most {MAX_REGEX_BYTES} bytes, got {size}"
    error = regex_error(raw)
    return f"{name}: {error}" if error else None


def status_filter(raw: str) -> tuple[int | None, int | None] | str:
    """`status=` as (exact code, class digit): `503` is (503, None), `5xx` (None, 5); or
    the text of a 400 answer."""
    found = _STATUS_CLASS.fullmatch(raw.lower())
    if found is not None:
        return None, int(found.group(1))
    number = whole_number("status", raw, *STATUS_RANGE)
    if isinstance(number, str):
        return f"{number} or a class such as 5xx"
    return number, None


@dataclass(frozen=True)
class LineFilters:
    """The filters on a line's status and text that /v1/logs and /v1/stats/volume share."""

    status: int | None = None
    status_class: int | None = None
    regex: str | None = None


def line_filters(given: Mapping[str, str]) -> LineFilters | str:
    """`status` (a code or a class) and `regex` checked, or the text of a 400 answer."""
    status = status_filter(given["status"]) if "status" in given else (None, None)
    if isinstance(status, str):
        return status
    pattern = given.get("regex")
    if pattern is not None:
        problem = regex("regex", pattern)
        if problem:
            return problem
    return LineFilters(status[0], status[1], pattern)


def given_values(params: Mapping[str, str], allowed: Collection[str]) -> dict[str, str] | str:
    """The parameters given a value (an empty one counts as not given), or the text of a
    400 answer: an unknown or repeated name, or both `n` and `limit`."""
    problem = names_problem(params, allowed)
    if problem:
        return problem
    given = {name: value for name, value in params.items() if value}
    if "n" in given and "limit" in given:
        return "n: the same as limit; give one of them"
    return given


def parse_logs_params(params: Mapping[str, str]) -> LogsRequest | str:
    """The request, or the text of a 400 answer. An empty value counts as not given."""
    given = given_values(params, LOGS_PARAMS)
    if isinstance(given, str):
        return given
    times: dict[str, float | None] = {"since": None, "until": None}
    for name in times:
        if name in given:
            parsed = moment(name, given[name])
            if isinstance(parsed, str):
                return parsed
            times[name] = parsed
    ranges = {"after": (0, MAX_ID), "limit": (0, MAX_LIMIT), "n": (0, MAX_LIMIT)}
    numbers: dict[str, int | None] = {"after": None, "limit": None, "n": None}
    for name, (low, high) in ranges.items():
        if name in given:
            number = whole_number(name, given[name], low, high)
            if isinstance(number, str):
                return number
            numbers[name] = number
    limit = next((n for n in (numbers["limit"], numbers["n"]) if n is not None), 100)
    filters = line_filters(given)
    if isinstance(filters, str):
        return filters
    follow = flag("follow", given["follow"]) if "follow" in given else False
    if isinstance(follow, str):
        return follow
    query = LogQuery(app=given.get("app"), source=given.get("source"),
                     since=times["since"], until=times["until"], regex=filters.regex,
                     status=filters.status, status_class=filters.status_class,
                     after=numbers["after"],
                     limit=limit)
    return LogsRequest(query, follow)
