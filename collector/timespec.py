"""Points in time as people type them: `1732470000`, `2026-11-24T20:00:00Z`, `15m` (ago)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_AGO = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: float | None = None) -> float | None:
    """Seconds since the epoch, or None when `text` is none of the accepted forms.

    A duration means that long ago; a bare number is a Unix time; anything else must be
    ISO 8601 (a naive one is taken as UTC).
    """
    value = text.strip()
    current = time.time() if now is None else now
    ago = _AGO.match(value)
    if ago:
        return current - float(ago.group(1)) * _UNITS[ago.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
