"""How much of the log a new alarms leader replays to rebuild its rules' state."""

from __future__ import annotations

from collections.abc import Iterable

from alarms.spec import AppRules

# SegfaultAssembler's default max_wait: an assembly older than this has been sent.
BACKTRACE_WAIT = 3.0


def warmup_seconds(rules: Iterable[AppRules]) -> float:
    """The longest stretch of log any rule's state depends on: the largest alarm-rate
    window, alarm-silence period and alarm-freq, and the backtrace wait for apps that
    assemble segfaults (0 when no app has conditions)."""
    longest = 0.0
    for app in rules:
        if not app.has_conditions:
            continue
        spans = [app.freq]
        spans += [rule.seconds for rule in app.rate]
        spans += [rule.seconds for rule in app.silence]
        if app.segfault:
            spans.append(BACKTRACE_WAIT)
        longest = max(longest, *spans)
    return longest
