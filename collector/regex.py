"""RE2, the linear-time regex engine every user-supplied pattern goes through.

A pattern from an API caller or an alarm rule must not be able to stall the collector
(catastrophic backtracking); RE2 runs in time linear in the input whatever the pattern.
"""

from __future__ import annotations

from typing import Any

import re2

# Errors come back to the caller as text; RE2's own stderr logging would only repeat them.
OPTIONS = re2.Options()
OPTIONS.log_errors = False

Pattern = Any  # re2 ships no type information


def regex_error(pattern: str) -> str | None:
    """Why `pattern` is not a usable RE2 expression, or None if it is."""
    try:
        re2.compile(pattern, OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid regular expression"
        return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
    return None


def compile_regex(pattern: str) -> Pattern:
    """Compile a pattern already checked with `regex_error`."""
    return re2.compile(pattern, OPTIONS)


def new_set() -> Any:
    """An RE2 set that searches many patterns in one pass over a line."""
    return re2.Set.SearchSet(OPTIONS)
