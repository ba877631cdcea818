"""The alarms lease (collector.cluster.lease) against a real nats-server: one leader at a
time; a leader that stops gives it up at once, one that stops renewing loses it to the
other node after the TTL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from collector.cluster.connection import Connection
from collector.cluster.kv import Bucket
from collector.cluster.lease import BUCKET, KEY, TTL_SECONDS, Lease

pytestmark = pytest.mark.e2e


class Seen:
    """A lease's changes as its listener got them."""

    def __init__(self) -> None:
        self.changes: list[bool] = []

    async def __call__(self, leader: bool) -> None:
        """The listener."""
        self.changes.append(leader)


async def wait_until(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until `check()` held; fails after `seconds`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_one_leader_and_a_clean_stop_hands_over_at_once(connection: Connection
                                                              ) -> None:
    """The first node to try leads; the second does not; when the first stops, it deletes
    the key, and the second leads at its next attempt (well within the TTL)."""
    def open_bucket() -> Awaitable[Bucket]:
        return connection.bucket(BUCKET, ttl=TTL_SECONDS, history=1)
    seen_a, seen_b = Seen(), Seen()
    a = Lease(open_bucket, "a", "boot-a", seen_a)
    b = Lease(open_bucket, "b", "boot-b", seen_b)
    await a.start()
    await b.start()
    try:
        assert (a.is_leader, b.is_leader) == (True, False)
        assert seen_a.changes == [True]
        await asyncio.sleep(2.5)  # renewals keep it
        assert (a.is_leader, b.is_leader) == (True, False)
        bucket = await connection.bucket(BUCKET, ttl=TTL_SECONDS, history=1)
        held = await bucket.get(KEY)
        assert held is not None
        assert b'"node":"a"' in held.value
        await a.stop()
        assert seen_a.changes == [True, False]
        took = await wait_until(lambda: b.is_leader, 3.0)
        assert took < 2.0
        assert seen_b.changes == [True]
    finally:
        await a.stop()
        await b.stop()


async def test_a_leader_that_stops_renewing_loses_the_lease_after_the_ttl(
        connection: Connection) -> None:
    """A leader whose task is cancelled (no delete: as if killed) keeps the key until it
    expires; the other node leads after about the TTL, never before `hold`."""
    def open_bucket() -> Awaitable[Bucket]:
        return connection.bucket(BUCKET, ttl=TTL_SECONDS, history=1)
    seen_b = Seen()
    a = Lease(open_bucket, "a", "boot-a", Seen())
    b = Lease(open_bucket, "b", "boot-b", seen_b)
    await a.start()
    await b.start()
    try:
        assert a.is_leader
        assert a._task is not None
        a._task.cancel()  # silent from now on, the key left as it is
        took = await wait_until(lambda: b.is_leader, TTL_SECONDS + 4.0)
        assert took >= TTL_SECONDS - 2.0
        assert seen_b.changes == [True]
        assert b.state.changes == 1
    finally:
        a.state.resign()
        await b.stop()
