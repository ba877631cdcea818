"""A token bucket: the one rate limiter both sides use (the collector per sender address,
the sidecar for its send rate). Pure: the caller passes the clock."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens a second, holding at most `burst` (default: one second's worth)."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        self._rate = rate
        self._burst = max(rate, 1.0) if burst is None else burst
        self._tokens = self._burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Seconds from `now` until a token is there (0 when one is)."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) / self._rate) if self._rate > 0 else 0.0
