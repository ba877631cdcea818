"""The live fan-out hub and its pending (uncommitted) records."""

from __future__ import annotations

import asyncio

from collector.fanout import Hub
from collector.query import LogQuery, matcher
from collector.record import Record


def rec(record_id: int, app: str = "a") -> Record:
    """A record."""
    return Record(record_id, None, app, "web.1", "h", "socket", f"line {record_id}")


async def test_followers_get_matching_records() -> None:
    """Each follower sees only what its filter matches, in order."""
    hub = Hub()
    only_b = hub.subscribe(matcher(LogQuery(app="b")))
    everything = hub.subscribe(matcher(LogQuery()))
    hub.consume([rec(1), rec(2, "b")])
    hub.consume([rec(3, "b")])
    assert [r.id for r in await only_b.take(0.1)] == [2, 3]
    assert [r.id for r in await everything.take(0.1)] == [1, 2, 3]
    assert await everything.take(0.01) == []
    hub.unsubscribe(only_b)
    assert hub.followers == 1


async def test_slow_follower_is_marked_lagged() -> None:
    """A follower that falls behind stops receiving and knows to catch up from the store."""
    hub = Hub(follower_limit=3)
    slow = hub.subscribe(matcher(LogQuery()))
    hub.consume([rec(i) for i in range(1, 5)])
    assert slow.lagged
    assert await slow.take(0.01) == []
    slow.resume()
    hub.consume([rec(9)])
    assert [r.id for r in await slow.take(0.1)] == [9]


async def test_close_all_ends_waits() -> None:
    """At shutdown every follower's wait returns at once, even one that starts later."""
    hub = Hub()
    follower = hub.subscribe(matcher(LogQuery()))
    hub.close_all()
    assert await asyncio.wait_for(follower.take(30), 1) == []
    assert follower.closed


async def test_paused_follower_holds_nothing_until_resumed() -> None:
    """While a follower reads its backlog from the store it is paused: what is published
    meanwhile is not queued (the store has it), and after `resume` it receives again."""
    hub = Hub()
    follower = hub.subscribe(matcher(LogQuery()))
    hub.consume([rec(1)])
    follower.pause()
    hub.consume([rec(i) for i in range(2, 50_000)])
    assert follower.lagged
    assert await follower.take(0.01) == []
    follower.resume()
    hub.consume([rec(50_000)])
    assert [r.id for r in await follower.take(0.1)] == [50_000]
