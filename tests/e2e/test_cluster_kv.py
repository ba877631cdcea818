"""The KV boundary (collector.cluster.kv) against a real nats-server: compare-and-set,
create-if-absent, deletion, listing and watching, and NATS errors as ClusterError."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from collector.cluster.connection import Connection
from collector.cluster.errors import ClusterError
from collector.cluster.kv import Bucket, Item
from collector.config.model import ClusterConfig
from tests.support.nats import NatsCluster

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def connected(new_nats: Callable[..., NatsCluster], size: int
                    ) -> AsyncIterator[tuple[NatsCluster, Connection]]:
    """`size` real nats-servers and an open connection to them, with `size` replicas;
    the connection is closed on the way out."""
    cluster = await asyncio.to_thread(new_nats, size)
    connection = Connection(ClusterConfig(nats=tuple(cluster.urls), node="t",
                                          replicas=size))
    await connection.open()
    try:
        yield cluster, connection
    finally:
        await connection.close()


async def test_create_update_delete(connection: Connection) -> None:
    """create only when absent, update only at the revision read, delete re-opens create."""
    bucket = await connection.bucket("test")
    first = await bucket.create("a", b"1")
    assert first is not None
    assert await bucket.create("a", b"2") is None
    assert await bucket.get("a") == Item("a", b"1", first)
    assert await bucket.update("a", b"3", first + 100) is None
    second = await bucket.update("a", b"3", first)
    assert second is not None
    assert second > first
    await bucket.delete("a")
    assert await bucket.get("a") is None
    assert await bucket.create("a", b"4") is not None
    assert (await bucket.get("a")) is not None


async def test_items_and_watch(connection: Connection) -> None:
    """items() lists the latest value of each live key; watch() then follows changes."""
    bucket = await connection.bucket("listing")
    assert await bucket.items() == []
    for key in ("x", "y", "z"):
        await bucket.put(key, key.encode())
    await bucket.put("x", b"x2")
    await bucket.delete("z")
    assert sorted((i.key, i.value) for i in await bucket.items()) == [("x", b"x2"),
                                                                      ("y", b"y")]
    seen: list[Item] = []

    async def follow(into: list[Item], watched: Bucket) -> None:
        async for item in watched.watch():
            into.append(item)
            if item.key == "w":
                return

    task = asyncio.create_task(follow(seen, bucket))
    await asyncio.sleep(0.2)
    await bucket.put("w", b"new")
    await asyncio.wait_for(task, 10)
    assert [i.key for i in seen if not i.deleted][-1] == "w"
    assert any(i.key == "z" and i.deleted for i in seen)


async def test_errors_are_cluster_errors(new_nats: Callable[..., NatsCluster]) -> None:
    """With its server gone, a bucket call raises ClusterError within its timeout."""
    async with connected(new_nats, 1) as (cluster, connection):
        bucket = await connection.bucket("gone")
        await bucket.put("k", b"v")
        await asyncio.to_thread(cluster.kill, 0)
        bucket._timeout = 1.0
        with pytest.raises(ClusterError):
            await bucket.put("k", b"w")


async def test_delete_at_a_stale_revision_keeps_the_key(connection: Connection) -> None:
    """A delete at the revision read is a compare-and-set too: at a revision someone else
    has since written over, it returns False and the key keeps the newer value (no
    ClusterError: the server answered)."""
    bucket = await connection.bucket("cas-delete")
    first = await bucket.create("k", b"1")
    assert first is not None
    second = await bucket.update("k", b"2", first)
    assert second is not None
    assert await bucket.delete("k", first) is False
    assert await bucket.get("k") == Item("k", b"2", second)
    assert await bucket.delete("k", second) is True
    assert await bucket.get("k") is None


async def listing(connection: Connection, name: str, tries: int = 3) -> list[Item]:
    """items() of the bucket opened afresh; a read that fails (ClusterError: the client
    lost its server for a moment, as on two busy cores) is tried again, up to `tries`
    times. What matters is that no read that answers leaves a key out."""
    for _ in range(tries - 1):
        with contextlib.suppress(ClusterError):
            return await (await connection.bucket(name)).items()
        await asyncio.sleep(0.5)
    return await (await connection.bucket(name)).items()


async def test_items_of_a_replicated_bucket_are_all_there_every_time(
        new_nats: Callable[..., NatsCluster]) -> None:
    """On three servers with 3 replicas, items() lists every key on every read: nats-py's
    "initial values read" marker, which can come before any value from a replicated
    bucket, is not taken for the end of the listing."""
    async with connected(new_nats, 3) as (_, connection):
        bucket = await connection.bucket("r3")
        keys = {f"k{i}" for i in range(200)}
        for key in sorted(keys):
            await bucket.put(key, b"v" * 100)
        for _ in range(20):
            assert {item.key for item in await listing(connection, "r3")} == keys
        empty = await connection.bucket("r3-empty")
        assert await empty.items() == []


async def test_a_write_waits_out_a_stream_without_leader(
        new_nats: Callable[..., NatsCluster]) -> None:
    """With two of three servers down a replicated bucket's stream has no leader and NATS
    answers a write "no responders"; the write is sent again within its timeout, so once
    a server is back and a leader elected it is stored (before this, the first answer
    was a ClusterError, which failed a fresh bucket's first put now and then)."""
    async with connected(new_nats, 3) as (cluster, connection):
        bucket = await connection.bucket("leaderless")
        await bucket.put("k", b"1")
        await asyncio.to_thread(cluster.kill, 1)
        await asyncio.to_thread(cluster.kill, 2)
        bucket._timeout = 30.0
        write = asyncio.create_task(bucket.put("k", b"2"))
        await asyncio.sleep(1.0)
        assert not write.done(), write
        await asyncio.to_thread(cluster.restart, 1)
        revision = await asyncio.wait_for(write, 30)
        assert await bucket.get("k") == Item("k", b"2", revision)
