"""`log-alarm` / `not-log-alarm` with uWSGI's meaning, all regexes in one RE2 pass.

uWSGI (core/alarm.c, uwsgi_alarm_log_check) tries the rules in file order: a matching
`log-alarm` triggers its alarms and the scan goes on; a matching `not-log-alarm` stops the
scan, so rules after it do not fire for that line. Lines starting `[uwsgi-alarm` never alarm.
Here one RE2 set finds every matching rule in a single pass over the line; walking the
matches in file order then gives exactly uWSGI's result.
"""

from __future__ import annotations

from collections.abc import Sequence

from alarms.spec import LogRule


def apply_order(rules: Sequence[LogRule], hits: Sequence[int]) -> list[LogRule]:
    """The rules that fire, given the indices of those whose regex matched (ascending)."""
    fired: list[LogRule] = []
    for index in hits:
        rule = rules[index]
        if rule.negate:
            break
        fired.append(rule)
    return fired


# uWSGI's own guard against alarm loops: lines starting so never alarm.
NEVER_ALARMS = "[uwsgi-alarm"
