"""Silences: time-boxed matchers that hold back notifications (pure: no I/O, no clock).

A silence names an app and, optionally, an alarm, a condition, and RE2 patterns searched
in the notification's source and message. While it is active (from `starts_at` until
`ends_at`, unless expired early) a notification it matches is recorded as `silenced` and
not sent. `parse_body` validates what `POST /v1/silences` is given.
"""

from __future__ import annotations

import math
import operator
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from alarms.notification import Notification
from collector.regex import Pattern, RegexSet, compile_regex, compile_together, regex_error
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
    """The first silence active at `now` that matches the notification, if any.

    Asked at every delivery attempt, with up to thousands of silences: it answers from
    the SilenceIndex of `index_of`."""
    return index_of(silences).first(notification, now)


def index_of(silences: Iterable[Silence]) -> SilenceIndex:
    """A SilenceIndex of `silences`: the last one made while the same silence objects are
    given again in the same order, a new one when they change."""
    given = tuple(silences)
    if not _last_index or not _last_index[0].built_from(given):
        _last_index[:] = [SilenceIndex(given)]
    return _last_index[0]


# first_match's index of the silences last asked about, for callers holding a plain
# list (the stores keep their own SilenceIndex, made again when their silences change).
_last_index: list[SilenceIndex] = []
# The prefilters join many patterns into one; RE2's default memory (8 MiB) is for one.
_JOINED_MEMORY = 64 << 20
# Patterns per prefilter chunk: fewer searches per notification against less to compile
# again when a silence is added (only the last chunk changes: see _Patterns).
CHUNK = 256


@lru_cache(maxsize=128)
def _chunk(patterns: tuple[str, ...]) -> tuple[Callable[[str], object], RegexSet] | None:
    """The alternation's search and the RE2::Set of some patterns; None when RE2 cannot
    compile them together (too large)."""
    return compile_together(patterns, _JOINED_MEMORY)


class _Patterns:
    """Distinct patterns searched in a text at once: which of them are found.

    In chunks of CHUNK patterns (a bounded size for RE2's memory whatever their number),
    in the order they first appear, so that adding a silence changes only the last chunk
    and the others come compiled from _chunk's cache. One RE2 search of a chunk's
    alternation says whether any of it is found (most texts meet none); only then does
    the chunk's RE2::Set say which. A set that cannot search (RE2 gives up when its DFA
    runs out of memory, and then reports nothing found) is caught by the alternation's
    answer disagreeing: the answer is then "not known", and the caller checks every
    silence one by one, as it does when a chunk fails to compile.
    """

    def __init__(self, patterns: Iterable[str | None]) -> None:
        self.ids: dict[str, int] = {}
        for pattern in patterns:
            if pattern is not None and pattern not in self.ids:
                self.ids[pattern] = len(self.ids)
        ordered = tuple(self.ids)
        self._chunks: list[tuple[int, Callable[[str], object], RegexSet]] = []
        self._unknown = False
        for offset in range(0, len(ordered), CHUNK):
            compiled = _chunk(ordered[offset:offset + CHUNK])
            if compiled is None:
                self._unknown = True
                break
            self._chunks.append((offset, *compiled))

    def found(self, text: str) -> frozenset[int] | None:
        """The ids of the patterns found in `text`; None when that is not known."""
        if self._unknown:
            return None
        hits: list[int] = []
        for offset, any_of, which in self._chunks:
            if any_of(text) is not None:
                here = which.match(text)
                if not here:
                    return None
                hits += [offset + number for number in here]
        # The one empty answer object: first() tells the usual case by identity.
        return frozenset(hits) if hits else _NONE


_NONE: frozenset[int] = frozenset()


class _AppSilences:
    """The silences of one app, in order, with their source patterns and their message
    patterns each searched at once (_Patterns). Only the silences whose patterns were
    all found (or that have none) are then checked one by one, in order."""

    def __init__(self, silences: list[Silence]) -> None:
        self._silences = tuple(silences)
        self._sources = _Patterns(s.source for s in silences)
        self._messages = _Patterns(s.match for s in silences)
        self._everyone = frozenset(range(len(silences)))
        # Positions of the silences each pattern belongs to, and of those without one.
        self._by_source = _positions([s.source for s in silences], self._sources.ids)
        self._by_message = _positions([s.match for s in silences], self._messages.ids)
        self._neither = self._by_source[-1] & self._by_message[-1]

    def first(self, notification: Notification, now: float) -> Silence | None:
        """The first of them active at `now` that matches the notification."""
        found_source = self._sources.found(notification.source)
        found_message = self._messages.found(notification.message)
        if found_source is _NONE and found_message is _NONE:
            # The usual case: no pattern found, so only silences without any are left.
            allowed = self._neither
        else:
            allowed = self._everyone
            for found, positions in ((found_message, self._by_message),
                                     (found_source, self._by_source)):
                if found is not None:
                    # Intersections first: each walks the smaller side, and `allowed`
                    # is mostly small by now.
                    allowed = (allowed & positions[-1]).union(
                        *(allowed & positions[i] for i in found))
        # Few are left but when RE2 could not say: the plain check, in order, decides.
        for position in sorted(allowed):
            silence = self._silences[position]
            if silence.active(now) and silence.matches(notification):
                return silence
        return None


def _positions(patterns: list[str | None], ids: dict[str, int]
               ) -> dict[int, frozenset[int]]:
    """Pattern id -> positions of the silences with that pattern; -1 -> those with none."""
    found: dict[int, set[int]] = {-1: set()}
    for position, pattern in enumerate(patterns):
        found.setdefault(-1 if pattern is None else ids[pattern], set()).add(position)
    return {key: frozenset(value) for key, value in found.items()}


class SilenceIndex:
    """Silences arranged so that matching one notification costs a few RE2 searches
    whatever their number: grouped by app, the patterns of an app searched at once (see
    _AppSilences). It answers as a scan of `silences` in order would; their matchers
    must not change while it is used (expiring one changes only its times, which are
    read at each match)."""

    def __init__(self, silences: tuple[Silence, ...]) -> None:
        self.silences = silences
        by_app: dict[str, list[Silence]] = {}
        for silence in silences:
            by_app.setdefault(silence.app, []).append(silence)
        self._apps = {app: _AppSilences(group) for app, group in by_app.items()}

    def built_from(self, silences: tuple[Silence, ...]) -> bool:
        """Whether it was built from these very silence objects, in this order."""
        return (len(silences) == len(self.silences)
                and all(map(operator.is_, silences, self.silences)))

    def first(self, notification: Notification, now: float) -> Silence | None:
        """The first silence active at `now` that matches the notification, if any."""
        group = self._apps.get(notification.app)
        return None if group is None else group.first(notification, now)


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
