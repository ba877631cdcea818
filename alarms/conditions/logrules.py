"""`log-alarm` / `not-log-alarm` with uWSGI's meaning, all regexes in one RE2 pass.

uWSGI (core/alarm.c, uwsgi_alarm_log_check) tries the rules in file order: a matching
`log-alarm` triggers its alarms and the scan goes on; a matching `not-log-alarm` stops the
scan, so rules after it do not fire for that line. Lines starting `[uwsgi-alarm` never alarm.
Here one RE2 set finds every matching rule in a single pass over the line; walking the
matches in file order then gives exactly uWSGI's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alarms.spec import LogRule
from collector.regex import new_set


class PatternSet:
    """Many RE2 patterns searched in one pass; `match` returns the sorted indices hit."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._size = len(patterns)
        self._set: Any = None
        if patterns:
            self._set = new_set()
            for pattern in patterns:
                self._set.Add(pattern)
            self._set.Compile()

    def match(self, line: str) -> list[int]:
        """Indices of the patterns found in `line`, ascending."""
        if self._set is None:
            return []
        # The binding answers None, not an empty list, when nothing matches.
        hits: list[int] | None = self._set.Match(line)
        if not hits:
            return []
        if len(hits) > 1:
            hits.sort()
        return hits


def apply_order(rules: Sequence[LogRule], hits: Sequence[int]) -> list[LogRule]:
    """The rules that fire, given the indices of those whose regex matched (ascending)."""
    fired: list[LogRule] = []
    for index in hits:
        rule = rules[index]
        if rule.negate:
            break
        fired.append(rule)
    return fired


def never_alarms(line: str) -> bool:
    """uWSGI's own guard against alarm loops."""
    return line.startswith("[uwsgi-alarm")
