"""RE2, the linear-time regex engine every user-supplied pattern goes through.

A pattern from an API caller or an alarm rule must not be able to stall the collector
(catastrophic backtracking); RE2 runs in time linear in the input whatever the pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


class RegexSet:
    """Many RE2 patterns searched in one pass over a line (RE2::Set, unanchored).

    `match` is on the alarms' per-line path, so it calls the compiled set directly: the
    binding's Python wrapper costs more than the search itself.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        wrapper = re2.Set.SearchSet(OPTIONS)
        for pattern in patterns:
            wrapper.Add(pattern)
        wrapper.Compile()
        raw = getattr(wrapper, "_set", None)
        self._raw: Callable[[bytes], list[int]] | None = raw.Match if raw is not None else None
        self._wrapper = wrapper

    def match(self, text: str) -> list[int]:
        """Indices of the patterns found in `text`, in no particular order."""
        if self._raw is not None:
            return self._raw(text.encode())
        hits: list[int] | None = self._wrapper.Match(text)
        return hits or []


def compile_together(patterns: Sequence[str], max_mem: int
                     ) -> tuple[Callable[[str], object], RegexSet] | None:
    """For many checked patterns: the search of their alternation (with `max_mem` bytes
    for RE2, whose default is for one pattern), which says whether any is found, and
    their RegexSet, which says which; None when RE2 cannot compile them together (too
    large), and the caller searches them another way."""
    options = re2.Options()
    options.log_errors = False
    options.never_capture = True
    options.max_mem = max_mem
    try:
        joined = re2.compile("|".join(f"(?:{p})" for p in patterns), options)
        return joined.search, RegexSet(patterns)
    except re2.error:
        return None
