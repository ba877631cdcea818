"""The wire domain's one error type."""

from __future__ import annotations


class WireError(ValueError):
    """A key token, address or other wire-level value is malformed; the message says what
    is wrong without showing any secret. Callers map it to their own domain's error."""
