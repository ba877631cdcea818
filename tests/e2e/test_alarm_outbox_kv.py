"""The replicated outbox (alarms.outbox.kv) on real nats-server processes: the outbox
behaviour the SQLite one has, two instances ("nodes") on one bucket, a kill -9 of the
bucket's stream leader among three servers during adds, and the dispatcher delivering
through it to a real webhook receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import aiohttp
import nats
import pytest
from structlog.testing import capture_logs

from alarms.delivery import Dispatcher
from alarms.grouping import Timing
from alarms.notification import Notification
from alarms.notifiers.webhook import WebhookNotifier
from alarms.outbox.base import Entry
from alarms.outbox.kv import BUCKET, KvOutbox
from alarms.outbox.kvformat import decode
from alarms.spec import RetryPolicy
from collector.cluster.connection import Connection
from collector.cluster.errors import ClusterError
from collector.cluster.kv import Bucket
from collector.config.model import ClusterConfig
from collector.errors import StoreError
from tests.support.nats import NatsCluster
from tests.support.webhook import WebhookServer
from tests.unit import test_alarm_outbox as contract
from tests.unit.test_alarm_outbox import MakeOutbox, notification

pytestmark = [
    pytest.mark.e2e,
    # As in test_nats_cluster: nats-py may drop a half-open StreamWriter when it
    # reconnects to a server being killed; its __del__ warning is not this code's.
    pytest.mark.filterwarnings("ignore:unclosed <StreamWriter:ResourceWarning"),
]

FAST = RetryPolicy(attempts=50, backoff=0.05, max_backoff=0.2, timeout=5.0, concurrency=4)


async def connect(cluster: NatsCluster, node: str, replicas: int = 1) -> Connection:
    """A node's connection to the servers."""
    connection = Connection(ClusterConfig(nats=tuple(cluster.urls), node=node,
                                          replicas=replicas))
    await connection.open()
    return connection


def on(connection: Connection) -> Callable[[], Awaitable[Bucket]]:
    """What KvOutbox calls to open the outbox bucket on this connection."""
    return lambda: connection.bucket(BUCKET)


@pytest.fixture
async def connections(new_nats: Callable[..., NatsCluster]
                      ) -> AsyncIterator[tuple[Connection, Connection]]:
    """Two nodes' connections to one real JetStream server."""
    cluster = await asyncio.to_thread(new_nats, 1)
    a, b = await connect(cluster, "a"), await connect(cluster, "b")
    yield a, b
    await a.close()
    await b.close()


@pytest.fixture
async def make_outbox(connections: tuple[Connection, Connection]) -> MakeOutbox:
    """The contract tests' outbox factory: KV outboxes on one bucket of a real server."""
    return lambda: KvOutbox(on(connections[0]))


@pytest.fixture
async def two(connections: tuple[Connection, Connection]
              ) -> AsyncIterator[tuple[KvOutbox, KvOutbox]]:
    """Two open outboxes on one bucket, each over its own node's connection."""
    a, b = KvOutbox(on(connections[0])), KvOutbox(on(connections[1]))
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


# The SQLite outbox's behavioural tests, here on the KV outbox.
test_entries_survive_reopening_with_their_state = (
    contract.test_entries_survive_reopening_with_their_state)
test_requeue_moves_dead_letters_back = contract.test_requeue_moves_dead_letters_back
test_add_keeps_each_due_time_across_reopening = (
    contract.test_add_keeps_each_due_time_across_reopening)
test_add_twice_keeps_one_and_prune_forgets_old_deliveries = (
    contract.test_add_twice_keeps_one_and_prune_forgets_old_deliveries)
test_latest_alerts_gives_the_newest_notification_of_each_alert = (
    contract.test_latest_alerts_gives_the_newest_notification_of_each_alert)


async def eventually(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


async def until(check: Callable[[], object], within: float, what: str) -> None:
    """Wait on the event loop until `check()` is truthy; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


async def stored(outbox: KvOutbox, entry_id: str) -> Entry | None:
    """The entry as `outbox` shows it (its mirror)."""
    return next((e for e in await outbox.recent(limit=10_000) if e.id == entry_id), None)


async def test_two_nodes_keep_the_first_add_and_see_each_others_writes(
        two: tuple[KvOutbox, KvOutbox]) -> None:
    """The same id added by A then by B stays A's notification (B's add returns without
    overwriting it); what A writes shows in B's `recent` (well within a second on an
    idle machine; bounded at 5 s here) and the other way round."""
    a, b = two
    first = notification()
    again = Notification(**{**vars(first), "message": "raised again by another leader"})
    await a.add([first], now=10.0)
    await b.add([again], now=11.0)
    for outbox in (a, b):
        entry = await eventually(partial(stored, outbox, first.id), 5, "the entry")
        assert entry.notification == first
    (only,) = await b.recent()
    assert only.next_attempt == 10.0

    other = notification(app="cart")
    started = time.monotonic()
    await a.add([other], now=12.0)
    await eventually(lambda: stored(b, other.id), 5, "A's add on B")
    assert time.monotonic() - started < 5
    done = await b.recent(app="cart")
    done[0].state, done[0].outcome = "delivered", "HTTP 204"
    await b.save(done[0])

    async def delivered_on_a() -> bool:
        entry = await stored(a, other.id)
        return entry is not None and entry.state == "delivered"

    await eventually(delivered_on_a, 5, "B's save on A")


async def test_a_requeue_on_another_node_reaches_the_delivering_one(
        two: tuple[KvOutbox, KvOutbox]) -> None:
    """B retries A's dead letter: A's `on_requeued` gets it as pending with attempts 0,
    and A's next save of it is a clean compare-and-set on that write; A's own requeue
    does not call it."""
    a, b = two
    handed: list[Entry] = []
    a.on_requeued(handed.extend)
    mine, theirs = notification(), notification()
    await a.add([mine, theirs], now=10.0)
    for entry in await a.recent():
        entry.state, entry.attempts, entry.last_error = "dead", 5, "HTTP 410"
        await a.save(entry)

    async def dead_on_b() -> bool:
        return len(await b.recent(state="dead")) == 2

    await eventually(dead_on_b, 5, "the dead letters on B")
    (moved,) = await b.requeue([theirs.id], now=30.0)
    assert (moved.id, moved.state, moved.attempts) == (theirs.id, "pending", 0)
    await until(lambda: handed, 5, "A's on_requeued")
    ((got,),) = [handed]
    assert (got.id, got.state, got.attempts, got.next_attempt) == (theirs.id, "pending",
                                                                   0, 30.0)
    assert await a.requeue([mine.id], now=31.0) != []
    got.state, got.attempts, got.outcome = "delivered", 1, "HTTP 204"
    with capture_logs() as logs:
        await a.save(got)
    assert not [e for e in logs if e["event"] == "alarm_outbox_conflict"]
    await asyncio.sleep(0.5)  # the watch has shown A its own requeue by now
    assert [e.id for e in handed] == [theirs.id]


async def test_conflicting_writes_resolve_as_the_rules_say(
        two: tuple[KvOutbox, KvOutbox], connections: tuple[Connection, Connection]) -> None:
    """A's save on a revision B has since written over is a conflict, logged with the id:
    B's delivery wins over A's retry (A's entry is updated to it in place); A's delivery
    wins over B's late retry step."""
    a, b = two
    first, second = notification(), notification()
    await a.add([first, second], now=10.0)

    async def both_on_b() -> bool:
        return len(await b.recent()) == 2

    await eventually(both_on_b, 5, "A's adds on B")
    held = {e.id: e for e in await a.recent()}
    on_b = {e.id: e for e in await b.recent()}

    on_b[first.id].state, on_b[first.id].outcome = "delivered", "HTTP 200"
    await b.save(on_b[first.id])
    retry = held[first.id]
    retry.attempts, retry.last_error, retry.next_attempt = 1, "HTTP 500", 99.0
    with capture_logs() as logs:
        await a.save(retry)
    assert [(e["id"], e["ours"], e["theirs"], e["kept"]) for e in logs
            if e["event"] == "alarm_outbox_conflict"] == [
        (first.id, "pending", "delivered", "theirs")]
    assert (retry.state, retry.outcome) == ("delivered", "HTTP 200")

    on_b[second.id].attempts, on_b[second.id].last_error = 3, "late step of a former leader"
    await b.save(on_b[second.id])
    done = held[second.id]
    done.state, done.attempts, done.outcome = "delivered", 1, "HTTP 204"
    with capture_logs() as logs:
        await a.save(done)
    assert [e["kept"] for e in logs if e["event"] == "alarm_outbox_conflict"] == ["ours"]
    bucket = await connections[0].bucket(BUCKET)
    for entry_id, outcome in ((first.id, "HTTP 200"), (second.id, "HTTP 204")):
        item = await bucket.get(entry_id)
        assert item is not None
        assert (decode(item.value).entry.state, decode(item.value).entry.outcome) == (
            "delivered", outcome)



async def test_every_add_that_returned_survives_a_kill_9_of_the_bucket_leader(
        new_nats: Callable[..., NatsCluster]) -> None:
    """Three servers, the bucket at 3 replicas: adds go on while the server leading the
    bucket's stream is killed with SIGKILL. Adds during the failover may fail (with
    StoreError, nothing else); every add that returned is in the bucket afterwards, read
    afresh and in the other node's mirror."""
    cluster = await asyncio.to_thread(new_nats, 3)
    a_conn, b_conn = await connect(cluster, "a", 3), await connect(cluster, "b", 3)
    a, b = KvOutbox(on(a_conn)), KvOutbox(on(b_conn))
    nc = await nats.connect(cluster.urls, connect_timeout=2, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.2)
    try:
        await a.open()
        await b.open()
        cluster_info = (await nc.jetstream().stream_info(f"KV_{BUCKET}")).cluster
        assert cluster_info is not None
        leader = cluster_info.leader
        assert leader is not None
        returned: list[str] = []
        failures: list[str] = []
        killed_after: int | None = None
        killed_at, resumed = 0.0, None
        deadline = time.monotonic() + 90
        n = 0
        while time.monotonic() < deadline:
            batch = [notification(at=float(n + i)) for i in range(5)]
            n += len(batch)
            try:
                await a.add(batch, now=time.time())
            except StoreError as exc:
                failures.append(str(exc))
                await asyncio.sleep(0.1)  # as the dispatcher waits before writing again
            else:
                returned += [x.id for x in batch]
                if killed_after is not None and resumed is None:
                    resumed = time.monotonic() - killed_at
            if killed_after is None and len(returned) >= 50:
                await asyncio.to_thread(cluster.kill, cluster.index(leader))
                killed_after, killed_at = len(returned), time.monotonic()
            elif killed_after is not None and len(returned) >= killed_after + 100:
                break
        assert killed_after is not None
        assert len(returned) >= killed_after + 100, (len(returned), failures[-3:])
        print(f"adds returned: {len(returned)}, failed batches: {len(failures)}, "
              f"first add returned {resumed:.2f} s after the kill")

        fresh = await b_conn.bucket(BUCKET)

        async def read_afresh() -> set[str] | None:
            try:
                return {item.key for item in await fresh.items()}
            except ClusterError:
                return None  # a consumer made just after a failover may not answer yet

        assert set(returned) <= await eventually(read_afresh, 30, "a fresh read")

        async def all_on_b() -> bool:
            return set(returned) <= {e.id for e in await b.recent(limit=100_000)}

        await eventually(all_on_b, 30, "every returned add in B's mirror")
    finally:
        await a.close()
        await b.close()
        await nc.close()
        await a_conn.close()
        await b_conn.close()


async def test_the_dispatcher_delivers_through_the_kv_outbox(
        connections: tuple[Connection, Connection],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A Dispatcher on a KvOutbox sends a submitted notification to a real webhook
    receiver once, under its id, and the entry ends `delivered` in the bucket."""
    hook = new_webhook()
    outbox = KvOutbox(on(connections[0]))
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(outbox, {("shop", "hook"): WebhookNotifier(
            f"{hook.url}/hook", session, 5.0)}, {"shop": FAST})
        dispatcher.start(await outbox.open())
        fired = notification()
        dispatcher.submit(fired)
        bucket = await connections[1].bucket(BUCKET)

        async def delivered() -> bool:
            item = await bucket.get(fired.id)
            return item is not None and decode(item.value).entry.state == "delivered"

        await eventually(delivered, 10, "the entry delivered in the bucket")
        assert hook.accepted_ids() == {fired.id: 1}
        await dispatcher.stop()
    await outbox.close()


async def test_a_grouping_dispatcher_sends_a_group_once_through_the_kv_outbox(
        connections: tuple[Connection, Connection],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """Cluster mode's dispatcher with grouping: three notifications of one group, written
    to the bucket due at their group's time, arrive as one webhook listing all three, and
    every member ends `delivered` in the bucket."""
    hook = new_webhook()
    outbox = KvOutbox(on(connections[0]))
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(outbox, {("shop", "hook"): WebhookNotifier(
            f"{hook.url}/hook", session, 5.0)}, {"shop": FAST},
            grouping={"shop": Timing(wait=0.3, interval=1.0)})
        dispatcher.start(await outbox.open())
        members = [notification(at=1000.0 + i) for i in range(3)]
        for member in members:
            dispatcher.submit(member)
        bucket = await connections[1].bucket(BUCKET)

        async def delivered() -> bool:
            items = [await bucket.get(m.id) for m in members]
            return all(item is not None and decode(item.value).entry.state == "delivered"
                       for item in items)

        await eventually(delivered, 10, "every member delivered in the bucket")
        (request,) = hook.requests
        assert [m["id"] for m in request.json()["members"]] == [m.id for m in members]
        await dispatcher.stop()
    await outbox.close()


async def test_the_dispatcher_stops_sending_what_another_node_delivered(
        two: tuple[KvOutbox, KvOutbox], connections: tuple[Connection, Connection],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A's dispatcher retries a notification its receiver refuses; B records it
    delivered (as a node that delivered it would). A's next save meets B's write, takes
    it, and A's dispatcher sends that notification no more."""
    hook = new_webhook(status=500)
    a, b = two
    async with aiohttp.ClientSession() as session:
        dispatcher = Dispatcher(a, {("shop", "hook"): WebhookNotifier(
            f"{hook.url}/hook", session, 5.0)}, {"shop": FAST})
        dispatcher.start([])
        fired = notification()
        dispatcher.submit(fired)
        await until(lambda: len(hook.requests) >= 2, 10, "two refused attempts")
        entry = await eventually(partial(stored, b, fired.id), 5, "the entry on B")
        entry.state, entry.outcome, entry.delivered_at = "delivered", "HTTP 204", time.time()
        await b.save(entry)
        await until(lambda: not dispatcher.pending_counts(), 10,
                    "A's dispatcher to drop the entry")
        sent = len(hook.requests)
        await asyncio.sleep(1.0)  # several retry periods of FAST (at most 0.2 s each)
        assert len(hook.requests) <= sent + 1  # one attempt may have been in flight
        await dispatcher.stop()
    item = await (await connections[1].bucket(BUCKET)).get(fired.id)
    assert item is not None
    assert (decode(item.value).entry.state, decode(item.value).entry.outcome) == (
        "delivered", "HTTP 204")
