"""Per-sender token buckets, so one flooding sender cannot crowd out the others."""

from __future__ import annotations


class SenderLimiter:
    """Allows each sender address `rate` datagrams per second, with a burst of one second.

    Pure: the caller passes the clock. Memory is bounded by forgetting every bucket when
    `max_senders` is reached, which at worst gives a flooder one fresh burst; `resets`
    counts how often.
    """

    def __init__(self, rate: float, max_senders: int = 65536) -> None:
        self._rate = rate
        self._burst = max(rate, 1.0)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._max_senders = max_senders
        self.resets = 0

    def allow(self, sender: str, now: float) -> bool:
        """Take one token from the sender's bucket if it has one."""
        tokens, last = self._buckets.get(sender, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if sender not in self._buckets and len(self._buckets) >= self._max_senders:
            self._buckets.clear()
            self.resets += 1
        self._buckets[sender] = (tokens, now)
        return allowed
