"""Silences an operator might have piled up, as `POST /v1/silences` bodies (pure).

`silence_bodies(count, app)` gives `count` bodies for one app (the benchmark's: the
worst case for matching, since every notification of that app meets all of them). They
mix the matchers a person would use (an alarm, a condition, a source pattern, a message
pattern, mostly several at once), and none matches anything the benchmark's traffic
raises, except the last HOLDING ones: those hold back the HARAKIRI rare line of
bench/sender.py, so the silencing path runs too. They come last so that a linear scan
meets every other silence before the one that holds.
"""

from __future__ import annotations

from typing import Any

HOLDING = 3
# Alarms the benchmark configures and some it does not (a silence may name any alarm).
ALARMS = ("hook", "ops", "pager", "oncall", "slack", None, None, None)
CONDITIONS = ("log", "segfault", "backlog", "rate", None, None, None, None, None)
# Message patterns with a number that never appears in the traffic's matching lines: the
# rare lines' numbers are sequence numbers, so each pattern pins words they never carry.
MESSAGES = (
    r"order {n} failed: gateway timeout",
    r"(?i)timeout talking to shard-{n}\b",
    r"ticket #{n}: escalated",
    r"worker {n} exceeded \d+ MB",
    r"^job-{n} (?:crashed|stalled)",
    r"tenant=t{n} quota",
    r"DeprecationWarning: feature_{n}",
    r"celery\.task\.t{n}\b.*retry",
)
SOURCES = (r"^cron\.{n}$", r"^worker-{n}\b", r"^beat\.{n}", r"batch{n}")


def silence_bodies(count: int, app: str = "bench", holding: int = HOLDING
                   ) -> list[dict[str, Any]]:
    """`count` silence bodies for `app` lasting 2 h, the last `holding` of them (at most
    `count`) matching the HARAKIRI rare line; the others match none of the traffic."""
    holding = min(holding, count)
    bodies: list[dict[str, Any]] = []
    for n in range(count - holding):
        body: dict[str, Any] = {"app": app, "for": "2h", "created_by": "bench",
                                "comment": f"bench silence {n}"}
        alarm = ALARMS[n % len(ALARMS)]
        condition = CONDITIONS[n % len(CONDITIONS)]
        if alarm is not None:
            body["alarm"] = alarm
        if condition is not None:
            body["condition"] = condition
        # Every silence has a pattern that pins it to something the traffic never says:
        # a message pattern mostly, a source pattern for one in three (with or without).
        if n % 3 == 0:
            body["source"] = SOURCES[n % len(SOURCES)].format(n=n)
        if n % 3 != 0 or n % 2 == 0:
            body["match"] = MESSAGES[n % len(MESSAGES)].format(n=n)
        bodies.append(body)
    for n in range(holding):
        bodies.append({"app": app, "for": "2h", "created_by": "bench",
                       "comment": f"bench harakiri {n}", "alarm": "hook",
                       "source": r"^web\.1$", "match": r"HARAKIRI ON WORKER \d+"})
    return bodies
