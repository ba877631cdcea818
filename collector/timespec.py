"""Time as people type it: durations (`500ms`, `30s`, `15m`, `7d`) for config values and
"ago" filters, and points in time (`1732470000`, `2026-11-24T20:00:00Z`, `15m` ago)."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)?")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def duration_seconds(text: str) -> float | None:
    """`90`, `500ms`, `30s`, `15m`, `12h`, `7d`, `2w` in seconds (a bare number is seconds);
    None when `text` is not a duration (ASCII digits only, finite)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        return None
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    return seconds if math.isfinite(seconds) else None


def parse_time(text: str, now: float | None = None) -> float | None:
    """Seconds since the epoch, or None when `text` is none of the accepted forms.

    A duration means that long ago; a bare number is a Unix time; anything else must be
    ISO 8601 (a naive one is taken as UTC). NaN and infinities are none of these, and
    nor is a value no float or calendar can hold, nor digits other than ASCII ones.
    """
    value = text.strip()
    current = time.time() if now is None else now
    if _NUMBER.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    ago = duration_seconds(value)
    if ago is not None:
        return current - ago
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        return None
