"""Silences: time-boxed matchers that hold back notifications (pure: no I/O, no clock).

A silence names an app and, optionally, an alarm, a condition, and RE2 patterns searched
in the notification's source and message. While it is active (from `starts_at` until
`ends_at`, unless expired early) a notification it matches is recorded as `silenced` and
not sent. `parse_body` validates what `POST /v1/silences` is given.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from alarms.notification import Notification
from collector.regex import Pattern, compile_regex, regex_error
from collector.timespec import duration_seconds, parse_time

MAX_FIELD = 200
MAX_PATTERN = 1000
MAX_COMMENT = 2000
# A silence longer than this is more likely a typo than a plan (and alarm-silence or
# removing the alarm says "forever" better).
MAX_DURATION = 366 * 86400.0
FIELDS = frozenset({"app", "alarm", "source", "condition", "match", "for", "until",
                    "comment", "created_by"})


def new_silence_id() -> str:
    """A silence id: time-ordered and unique (`sil_` + 48-bit ms + 64 random bits)."""
    return f"sil_{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Pattern:
    return compile_regex(pattern)


@dataclass
class Silence:
    """One silence and its life: created, active until `ends_at`, perhaps expired early."""

    id: str
    app: str
    alarm: str | None
    source: str | None
    condition: str | None
    match: str | None
    starts_at: float
    ends_at: float
    comment: str
    created_by: str
    created_at: float
    expired_at: float | None = None
    expired_by: str | None = None

    def active(self, now: float) -> bool:
        """Whether it holds notifications back at `now`."""
        return self.expired_at is None and self.starts_at <= now < self.ends_at

    def matches(self, notification: Notification) -> bool:
        """Whether every matcher it has agrees with the notification (time aside)."""
        n = notification
        return (n.app == self.app
                and (self.alarm is None or n.alarm == self.alarm)
                and (self.condition is None or n.condition == self.condition)
                and (self.source is None or _compiled(self.source).search(n.source)
                     is not None)
                and (self.match is None or _compiled(self.match).search(n.message)
                     is not None))

    def matchers(self) -> dict[str, str]:
        """The matchers it has, by name (for logs and listings)."""
        given = {"app": self.app, "alarm": self.alarm, "source": self.source,
                 "condition": self.condition, "match": self.match}
        return {k: v for k, v in given.items() if v is not None}

    def to_json(self, now: float) -> dict[str, Any]:
        """As the API shows it, with `active` as of `now`."""
        return {**asdict(self), "active": self.active(now)}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Silence:
        """Inverse of `to_json` (the `active` flag is derived, so ignored)."""
        return cls(**{k: v for k, v in doc.items() if k != "active"})


def first_match(silences: Iterable[Silence], notification: Notification,
                now: float) -> Silence | None:
    """The first silence active at `now` that matches the notification, if any."""
    for silence in silences:
        if silence.active(now) and silence.matches(notification):
            return silence
    return None


def _text(body: Mapping[str, Any], name: str, limit: int, *,
          required: bool = False) -> str | tuple[str] | None:
    """A string field: its value, None if absent, or (problem,) when it is not usable."""
    value = body.get(name)
    if value is None:
        return (f"{name}: required",) if required else None
    if not isinstance(value, str) or not value.strip():
        return (f"{name}: expected a non-empty string",)
    if len(value) > limit:
        return (f"{name}: at most {limit} characters, got {len(value)}",)
    return value


def parse_body(body: Any, now: float) -> Silence | str:
    """A new silence from a `POST /v1/silences` body, or the text of a 400 answer, which
    names the field at fault."""
    if not isinstance(body, dict):
        return "body: expected a JSON object with app, for or until, and comment"
    unknown = sorted(str(k) for k in set(body) - FIELDS)
    if unknown:
        return f"{unknown[0]}: unknown field; expected {', '.join(sorted(FIELDS))}"
    values: dict[str, str | None] = {}
    for name, limit, required in (("app", MAX_FIELD, True), ("alarm", MAX_FIELD, False),
                                  ("condition", MAX_FIELD, False),
                                  ("source", MAX_PATTERN, False),
                                  ("match", MAX_PATTERN, False),
                                  ("comment", MAX_COMMENT, True),
                                  ("created_by", MAX_FIELD, False)):
        value = _text(body, name, limit, required=required)
        if isinstance(value, tuple):
            return value[0]
        values[name] = value
    for name in ("source", "match"):
        pattern = values[name]
        if pattern is not None:
            problem = regex_error(pattern)
            if problem:
                return f"{name}: not a valid RE2 expression: {problem}"
    ends_at = _end(body, now)
    if isinstance(ends_at, str):
        return ends_at
    assert values["app"] is not None
    assert values["comment"] is not None
    return Silence(id=new_silence_id(), app=values["app"], alarm=values["alarm"],
                   source=values["source"], condition=values["condition"],
                   match=values["match"], starts_at=now, ends_at=ends_at,
                   comment=values["comment"], created_by=values["created_by"] or "unknown",
                   created_at=now)


def _end(body: Mapping[str, Any], now: float) -> float | str:
    """When a silence given `for` or `until` ends, or the problem."""
    if ("for" in body) == ("until" in body):
        return "for: give for (a duration, e.g. 2h) or until (a time), not both or neither"
    if "for" in body:
        given = body["for"]
        if isinstance(given, bool) or not isinstance(given, str | int | float):
            return "for: expected a duration such as 30m or 2h"
        seconds = (duration_seconds(given) if isinstance(given, str) else float(given))
        if seconds is None or not seconds > 0:
            return f"for: expected a positive duration such as 30m or 2h, got {given!r:.60}"
        if seconds > MAX_DURATION:
            return f"for: at most {MAX_DURATION / 86400:g}d"
        return now + seconds
    given = body["until"]
    if isinstance(given, bool) or not isinstance(given, str | int | float):
        return "until: expected a time (ISO 8601 or Unix seconds)"
    moment = parse_time(given, now) if isinstance(given, str) else float(given)
    if moment is None or not math.isfinite(moment):
        return f"until: expected a time (ISO 8601 or Unix seconds), got {given!r:.60}"
    if moment <= now:
        return "until: must be in the future"
    if moment - now > MAX_DURATION:
        return f"until: at most {MAX_DURATION / 86400:g}d from now"
    return moment
