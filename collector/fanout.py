"""Live fan-out: every published record to every follower whose filter it matches.

Records are published before their batch commits, so a follower sees a line within
milliseconds. A follower that starts (or resumes) reads the store, committed and
uncommitted records both, after subscribing, and so misses nothing in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from collector.record import Record

Match = Callable[[Record], bool]
# Records queued for one follower before it is marked lagged: what a slow follower can
# make the collector hold (besides one write buffer), a few MB at typical line sizes.
FOLLOWER_LIMIT = 10_000


class Subscription:
    """One follower's queue. When it falls `limit` records behind, it is marked lagged and
    stops receiving; the follower then catches up from the store, so nothing is lost."""

    def __init__(self, match: Match, limit: int) -> None:
        self._match = match
        self._limit = limit
        self._items: list[Record] = []
        self._wakeup = asyncio.Event()
        self.lagged = False
        self.closed = False

    def offer(self, records: Sequence[Record]) -> bool:
        """Queue the matching records (called by the hub); True if this made it lagged."""
        if self.lagged:
            return False
        match = self._match
        matching = [r for r in records if match(r)]
        if not matching:
            return False
        self._items.extend(matching)
        self._wakeup.set()
        if len(self._items) > self._limit:
            self.lagged = True
            self._items.clear()
            return True
        return False

    async def take(self, wait: float) -> list[Record]:
        """Everything queued, waiting up to `wait` seconds for something to arrive."""
        if not self._items and not self.lagged and not self.closed:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except TimeoutError:
                return []
        items, self._items = self._items, []
        return items

    def close(self) -> None:
        """End the subscription: `take` returns at once, now and from now on."""
        self.closed = True
        self._wakeup.set()

    def pause(self) -> None:
        """Stop receiving (and drop what is queued) while the follower reads the store;
        `resume` when it has caught up."""
        self.lagged = True
        self._items.clear()

    def resume(self) -> None:
        """Start receiving again after catching up from the store."""
        self.lagged = False


class Hub:
    """The fan-out to live followers."""

    def __init__(self, follower_limit: int = FOLLOWER_LIMIT) -> None:
        self._subscriptions: set[Subscription] = set()
        self._follower_limit = follower_limit
        self.lagged_total = 0

    def consume(self, records: Sequence[Record]) -> None:
        """Publish records to followers."""
        for subscription in self._subscriptions:
            if subscription.offer(records):
                self.lagged_total += 1

    def subscribe(self, match: Match) -> Subscription:
        """Start following; call `unsubscribe` when done."""
        subscription = Subscription(match, self._follower_limit)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop following."""
        self._subscriptions.discard(subscription)

    def close_all(self) -> None:
        """End every follower's subscription (at shutdown, so streams end at once)."""
        for subscription in self._subscriptions:
            subscription.close()

    @property
    def followers(self) -> int:
        """How many followers are connected."""
        return len(self._subscriptions)
