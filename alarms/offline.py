"""`collector alarms test`: an app's rules over sample lines, with nothing sent.

Lines may be plain log lines (all taken as arriving at one moment, as a burst would) or
`collector tail` output (`TIMESTAMP APP[SOURCE]: LINE`), whose time and source are used, so
that alarm-freq, alarm-rate and backtrace assembly behave as they would have live.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from alarms.engine import AlarmEngine
from alarms.notification import Notification
from alarms.spec import AppRules
from collector.record import Record

_TAIL_LINE = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\dT\S+) (?P<app>[^\s\[]+)\[(?P<source>[^\]]+)\]"
                        r": (?P<line>.*)$")


@dataclass
class Outcome:
    """What the rules did with the lines."""

    notifications: list[Notification] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)
    lines: int = 0


def _parse(raw: str, source: str, at: float) -> tuple[str, str, float]:
    """(source, line, time) of one input line."""
    match = _TAIL_LINE.match(raw)
    if match is not None:
        try:
            moment = datetime.fromisoformat(match["stamp"]).timestamp()
        except ValueError:
            return source, raw, at
        return match["source"], match["line"], moment
    return source, raw, at


def evaluate(rules: AppRules, lines: Iterable[str], source: str, at: float) -> Outcome:
    """Feed `lines` (without their newlines) to a fresh engine with only `rules`."""
    outcome = Outcome()
    clock = [at]
    engine = AlarmEngine([rules], outcome.notifications.append, clock=lambda: clock[0])
    last_id = 0
    for raw in lines:
        line_source, line, moment = _parse(raw, source, at)
        clock[0] = moment
        record_id = max(last_id + 1, int(moment * 1e6))
        last_id = record_id
        engine.consume([Record(record_id, None, rules.app, line_source, "stdin", "test",
                               line)])
        engine.tick(moment)
        outcome.lines += 1
    engine.finish()
    for (_, alarm), count in engine.suppressed.items():
        outcome.suppressed[alarm] += count
    return outcome
