"""The cluster's one error type; nats-py's exceptions are mapped to it at the boundary."""

from __future__ import annotations

from collector.errors import CollectorError


class ClusterError(CollectorError):
    """NATS cannot be reached, refused a request, or sent something this node cannot read."""


class OutOfSequence(ClusterError):
    """JetStream refused a publish whose expected last sequence on its subject was not
    the subject's last: `last` is the sequence the subject ends at."""

    def __init__(self, message: str, last: int) -> None:
        super().__init__(message)
        self.last = last


def describe(exc: BaseException) -> str:
    """An exception's message, or its type's name when it has none (a TimeoutError's is
    empty, and an f-string's `{exc or ...}` never falls back: an exception is truthy)."""
    return str(exc) or type(exc).__name__
