"""Per-sender token buckets, so one flooding sender cannot crowd out the others."""

from __future__ import annotations

from logwire.bucket import TokenBucket


class SenderLimiter:
    """Allows each sender address `rate` datagrams per second, with a burst of one second.

    Pure: the caller passes the clock. Memory is bounded by forgetting every bucket when
    `max_senders` is reached, which at worst gives a flooder one fresh burst; `resets`
    counts how often.
    """

    def __init__(self, rate: float, max_senders: int = 65536) -> None:
        self._rate = rate
        self._buckets: dict[str, TokenBucket] = {}
        self._max_senders = max_senders
        self.resets = 0

    def allow(self, sender: str, now: float) -> bool:
        """Take one token from the sender's bucket if it has one."""
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) >= self._max_senders:
                self._buckets.clear()
                self.resets += 1
            bucket = self._buckets[sender] = TokenBucket(self._rate, now)
        return bucket.take(now)
