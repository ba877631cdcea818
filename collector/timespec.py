"""Points in time as people type them: `1732470000`, `2026-11-24T20:00:00Z`, `15m` (ago)."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

_AGO = re.compile(r"([0-9]+(?:\.[0-9]+)?)(s|m|h|d|w)")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float | None:
    """Seconds since the epoch, or None when `text` is none of the accepted forms.

    A duration means that long ago; a bare number is a Unix time; anything else must be
    ISO 8601 (a naive one is taken as UTC). NaN and infinities are none of these, and
    nor is a value no float or calendar can hold, nor digits other than ASCII ones.
    """
    value = text.strip()
    current = time.time() if now is None else now
    ago = _AGO.fullmatch(value)
    if ago:
        found = current - float(ago.group(1)) * _UNITS[ago.group(2)]
        return found if math.isfinite(found) else None
    if _NUMBER.fullmatch(value):
        number = float(value)
        return number if math.isfinite(number) else None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    except (ValueError, OverflowError):
        return None
