"""The cluster's silences (alarms.silence_kv) on a real nats-server: two instances
("nodes") on one bucket see each other's silences, an expiry from both at once is one
expiry, a new instance (a restart) finds what was kept, ended ones are forgotten, the
count is bounded, and NATS's absence is a StoreError (the API's 503)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from alarms import silence_kv
from alarms.silence_kv import BUCKET, KvSilences
from alarms.silence_store import KEEP_ENDED
from alarms.silences import Silence
from collector.cluster.connection import Connection
from collector.cluster.kv import Bucket
from collector.config.model import ClusterConfig
from collector.errors import StoreError
from tests.support.nats import NatsCluster
from tests.unit.test_silences import note, silence

pytestmark = [
    pytest.mark.e2e,
    # As in test_nats_cluster: nats-py may drop a half-open StreamWriter when it
    # reconnects to a server being killed; its __del__ warning is not this code's.
    pytest.mark.filterwarnings("ignore:unclosed <StreamWriter:ResourceWarning"),
]


def on(connection: Connection) -> Callable[[], Awaitable[Bucket]]:
    """What KvSilences calls to open the bucket on this connection."""
    return lambda: connection.bucket(BUCKET)


@pytest.fixture
async def cluster(new_nats: Callable[..., NatsCluster]) -> NatsCluster:
    """One real JetStream server."""
    return await asyncio.to_thread(new_nats, 1)


@pytest.fixture
async def connections(cluster: NatsCluster) -> AsyncIterator[tuple[Connection, Connection]]:
    """Two nodes' connections to the server."""
    made = []
    for node in ("a", "b"):
        connection = Connection(ClusterConfig(nats=tuple(cluster.urls), node=node,
                                              replicas=1))
        await connection.open()
        made.append(connection)
    yield made[0], made[1]
    for connection in made:
        await connection.close()


@pytest.fixture
async def two(connections: tuple[Connection, Connection]
              ) -> AsyncIterator[tuple[KvSilences, KvSilences]]:
    """Two open silence stores on one bucket, each over its own node's connection."""
    a, b = KvSilences(on(connections[0])), KvSilences(on(connections[1]))
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


async def until(check: Callable[[], object], what: str, within: float = 5.0) -> None:
    """Poll `check` on the loop until it is true (the other node's watch), or fail."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_silence_made_on_one_node_holds_on_the_other_until_expired_there(
        two: tuple[KvSilences, KvSilences], connections: tuple[Connection, Connection]
        ) -> None:
    """Added on A: B matches it and lists it; expired on B: A stops matching it and lists
    it with `--all` only, expired by B's operator; a new instance finds both states."""
    a, b = two
    now = time.time()
    made = silence(alarm="hook", created_by="ana")
    made.starts_at, made.ends_at, made.created_at = now, now + 3600, now
    with capture_logs() as logs:
        await a.add(made, now)
    assert [(e["event"], e["by"], e["id"]) for e in logs] == [
        ("silence_created", "ana", made.id)]
    assert a.match(note(), now) == made
    await until(lambda: b.match(note(), now) == made, "the silence on node b")
    assert b.match(note(alarm="mail"), now) is None
    # Ends on time: no write needed, every node's clock ends it.
    assert b.match(note(), made.ends_at - 0.001) == made
    assert b.match(note(), made.ends_at) is None
    assert [s.id for s in b.listed(now)] == [made.id]

    with capture_logs() as logs:
        ended = await b.expire(made.id, now + 1, "bo")
    assert ended is not None
    assert (ended.expired_by, ended.expired_at, ended.ends_at) == ("bo", now + 1, now + 1)
    assert [(e["event"], e["by"]) for e in logs] == [("silence_expired", "bo")]
    await until(lambda: a.match(note(), now + 2) is None, "the expiry on node a")
    assert a.listed(now + 2) == []
    assert [s.expired_by for s in a.listed(now + 2, everything=True)] == ["bo"]
    assert await a.expire("sil_nope", now, "bo") is None
    assert await a.expire("no such/key*", now, "bo") is None

    restarted = KvSilences(on(connections[0]))
    await restarted.open()
    try:
        assert restarted.listed(now + 2, everything=True) == [ended]
    finally:
        await restarted.close()


async def test_an_expiry_from_two_nodes_at_once_is_one_expiry(
        two: tuple[KvSilences, KvSilences]) -> None:
    """Both nodes expire the same silence concurrently: the compare-and-set lets one
    write stand, the other reads it again and finds it ended; one `silence_expired`."""
    a, b = two
    now = time.time()
    made = silence()
    made.starts_at, made.ends_at = now, now + 3600
    await a.add(made, now)
    await until(lambda: b.match(note(), now) is not None, "the silence on node b")
    with capture_logs() as logs:
        first, second = await asyncio.gather(a.expire(made.id, now + 1, "ana"),
                                             b.expire(made.id, now + 1, "bo"))
    assert first is not None
    assert second is not None
    assert first.expired_by == second.expired_by
    assert [e["event"] for e in logs] == ["silence_expired"]
    assert logs[0]["by"] == first.expired_by


async def test_ended_ones_are_forgotten_and_the_count_is_bounded(
        two: tuple[KvSilences, KvSilences], monkeypatch: pytest.MonkeyPatch) -> None:
    """An add deletes the keys of silences ended more than KEEP_ENDED ago (the other
    node's copy follows); beyond MAX_SILENCES kept, an add is refused."""
    a, b = two
    now = time.time()
    old = silence()
    old.starts_at, old.ends_at = now - KEEP_ENDED - 7200, now - KEEP_ENDED - 3600
    await a.add(old, old.starts_at)
    await until(lambda: b.listed(old.starts_at + 1), "the old silence on node b")
    fresh = dataclasses.replace(silence(), starts_at=now, ends_at=now + 60)
    await a.add(fresh, now)
    await until(lambda: [s.id for s in b.listed(now - KEEP_ENDED - 3700, everything=True)]
                == [fresh.id], "the old silence forgotten on node b")
    monkeypatch.setattr(silence_kv, "MAX_SILENCES", 2)
    await b.add(dataclasses.replace(silence(), starts_at=now, ends_at=now + 60), now)
    await until(lambda: len(a.listed(now)) == 2, "node b's silence on node a")
    with pytest.raises(StoreError, match="at most 2 silences"):
        await a.add(dataclasses.replace(silence(), starts_at=now, ends_at=now + 60), now)


async def test_without_nats_a_change_is_a_store_error_and_matching_goes_on(
        cluster: NatsCluster, connections: tuple[Connection, Connection],
        two: tuple[KvSilences, KvSilences]) -> None:
    """A store not open yet refuses with a clear reason; with the server gone, adding and
    expiring fail with StoreError (the API's 503) while matching uses what was seen."""
    a, _ = two
    closed = KvSilences(on(connections[0]))
    with pytest.raises(StoreError, match="has not reached the cluster"):
        closed.listed(time.time())
    now = time.time()
    made: Silence = dataclasses.replace(silence(), starts_at=now, ends_at=now + 3600)
    await a.add(made, now)
    await asyncio.to_thread(cluster.kill, 0)
    # Both at once: each waits for NATS's answer until the bucket's timeout.
    added, expired = await asyncio.gather(
        a.add(dataclasses.replace(silence(), starts_at=now, ends_at=now + 60), now),
        a.expire(made.id, now, "bo"), return_exceptions=True)
    assert isinstance(added, StoreError)
    assert "the silence was not kept: the cluster (NATS) did not confirm" in str(added)
    assert isinstance(expired, StoreError)
    assert "the silence was not expired: the cluster (NATS)" in str(expired)
    assert a.match(note(), now + 1) == made
