"""Heroku's error lines, as drains deliver them, recognised for `alarm-heroku`.

- the router's `at=error code=H12 desc="Request timeout" method=GET path="/slow" ...
  dyno=web.1 ...` (source `router`);
- a dyno's runtime errors, `Error R14 (Memory quota exceeded)`, `Error R10 (Boot timeout)
  -> ...` (source `web.1`, ...);
- a dyno's crash, `State changed from up to crashed` (code `crashed`).

Pure: a line (and its source) in, an event or None out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from alarms.conditions.event import Event
from alarms.spec import HerokuRule
from collector.routerlog import parse_router_line

CODE = re.compile(r"(?:[HRL]\d{2}|crashed)")
_RUNTIME = re.compile(r"\bError ([HRL]\d{2}) \(([^)]*)\)")
_CRASHED = re.compile(r"\bState changed from (\w+) to crashed\b")


class HerokuError(NamedTuple):
    """What an error line says: its code, description, and the request's path and dyno
    where the router names them."""

    code: str
    desc: str
    path: str | None
    dyno: str | None


def may_be_heroku_error(line: str) -> bool:
    """A cheap test, true for every line `parse_heroku_error` recognises."""
    return "code=" in line or "Error " in line or "to crashed" in line


def parse_heroku_error(line: str, source: str) -> HerokuError | None:
    """The error a Heroku line reports, or None for any other line."""
    if line.startswith("at=error"):
        fields = parse_router_line(line)
        if fields is None or fields.code is None:
            return None
        return HerokuError(fields.code, fields.desc or "", fields.path, fields.dyno)
    if "Error " in line:
        match = _RUNTIME.search(line)
        if match is not None:
            return HerokuError(match[1], match[2], None, source)
    if "to crashed" in line:
        match = _CRASHED.search(line)
        if match is not None:
            return HerokuError("crashed", match[0], None, source)
    return None


class HerokuWatch:
    """Turns Heroku error lines into Events for the alarms whose rules name the code."""

    def __init__(self, rules: Sequence[HerokuRule]) -> None:
        self._by_code: dict[str, tuple[str, ...]] = {}
        for rule in rules:
            for code in rule.codes:
                alarms = self._by_code.get(code, ())
                self._by_code[code] = (*alarms, *(a for a in rule.alarms if a not in alarms))

    def feed(self, line: str, source: str, at: float) -> Event | None:
        """The event this line raises, if its code has an alarm."""
        error = parse_heroku_error(line, source)
        if error is None:
            return None
        alarms = self._by_code.get(error.code)
        if not alarms:
            return None
        return Event(alarms, "heroku", source, line, at,
                     facts={"code": error.code, "desc": error.desc, "path": error.path,
                            "dyno": error.dyno},
                     # Not the whole line, which names each request: one code on one path
                     # of one dyno is one message to alarm-freq.
                     storm_key=f"heroku {error.code} {error.dyno} {error.path}")
