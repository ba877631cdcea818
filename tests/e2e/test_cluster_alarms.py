"""Alarms in cluster mode (docs/CLUSTER.md, "Alarms: one evaluator"): three nats-server,
two collector nodes, a real webhook receiver. One leader evaluates the shared log, so a
rate rule counts lines from both nodes together, and its notifications keep their ids
across a kill -9 of the leader."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable

import pytest
from nats import connect as nats_connect

from collector.cluster.connection import Connection
from collector.cluster.kv import Bucket
from collector.cluster.lease import BUCKET, KEY, RENEW_SECONDS, TTL_SECONDS
from collector.config.model import ClusterConfig
from tests.support.alarms_api import alarms
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.net import wait_for
from tests.support.send import send
from tests.support.webhook import WebhookServer, verify_signature

pytestmark = pytest.mark.e2e

# A lease held by a node that is not running.
STRANGER = b'{"node":"gone","boot":"x"}'
HOOK_SECRET = "whsec_" + base64.b64encode(b"cluster-alarms-signing-key").decode()
NODE = """[cluster]
nats = {nats}
node = {node}
replicas = 3

[listener:plain]
udp = 127.0.0.1:{{port:plain}}
format = socket
app = web

[app:web]
alarm = hook webhook:{hook}/hook;secret={secret};timeout=2
{rules}
alarm-backoff = 0.2
alarm-max-backoff = 1
alarm-retries = {retries}
"""


def node(new_collector: Callable[..., CollectorProcess], nats: NatsCluster, name: str,
         hook: WebhookServer, rules: str, *, retries: int = 1000) -> CollectorProcess:
    """A started collector node with the webhook alarm `hook` and `rules`."""
    collector = new_collector(config=NODE.format(
        nats=",".join(nats.urls), node=name, hook=hook.url, secret=HOOK_SECRET,
        rules=rules, retries=retries))
    collector.start(timeout=40.0)
    return collector


class Streamer(threading.Thread):
    """Sends `order N failed` lines to one port every 30 ms until halted (at most 10 s)."""

    def __init__(self, port: int, start: int) -> None:
        super().__init__(daemon=True)
        self.port, self.next = port, start
        self.halt = threading.Event()

    def run(self) -> None:
        """One line every 30 ms."""
        deadline = time.monotonic() + 10.0
        while not self.halt.is_set() and time.monotonic() < deadline:
            send([f"order {self.next} failed".encode()], self.port)
            self.next += 1
            time.sleep(0.03)


def leader(*nodes: CollectorProcess) -> CollectorProcess | None:
    """The node whose /metrics says it holds the alarms lease (None while none does)."""
    held = [n for n in nodes
            if n.metrics().get("collector_cluster_alarms_leader", 0.0) == 1.0]
    assert len(held) <= 1, "two alarms leaders"
    return held[0] if held else None


async def two_nodes(nats: NatsCluster, new_collector: Callable[..., CollectorProcess],
                    hook: WebhookServer, rules: str, *, retries: int = 1000
                    ) -> tuple[CollectorProcess, CollectorProcess, CollectorProcess]:
    """Nodes a and b with `rules`, started one after the other; (a, b, the alarms leader)
    once one of them leads."""
    a = await asyncio.to_thread(node, new_collector, nats, "a", hook, rules,
                                retries=retries)
    b = await asyncio.to_thread(node, new_collector, nats, "b", hook, rules,
                                retries=retries)
    first = await asyncio.to_thread(wait_for, lambda: leader(a, b), 30.0,
                                    "an alarms leader")
    return a, b, first


async def test_a_rate_rule_counts_lines_from_both_nodes_and_fires_once(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """`alarm-rate = hook 4/30 ...` fed two matching lines through node A and two through
    node B fires exactly once (one engine sees the cluster's lines), and `/v1/alarms` on
    the node that is not the leader lists it too."""
    nats = await asyncio.to_thread(new_nats, 3)
    hook = new_webhook()
    rules = "alarm-rate = hook 4/30 upstream timed out"
    a, b, first = await two_nodes(nats, new_collector, hook, rules)
    send([b"upstream timed out 1", b"upstream timed out 2"], a.port("plain"))
    send([b"upstream timed out 3", b"upstream timed out 4"], b.port("plain"))
    (request,) = await asyncio.to_thread(wait_for, hook.accepted, 15.0, "the rate alarm")
    assert verify_signature(HOOK_SECRET, request)
    body = request.json()
    assert body["condition"] == "rate"
    assert body["count"] == 4
    # Three more lines (below the threshold again) must not fire a second time.
    send([b"upstream timed out 5"], a.port("plain"))
    send([b"upstream timed out 6", b"upstream timed out 7"], b.port("plain"))
    await asyncio.sleep(2.0)
    assert len(hook.requests) == 1, [r.json() for r in hook.requests]
    other = b if first is a else a
    listed = await asyncio.to_thread(
        wait_for, lambda: [e for e in alarms(other) if e["state"] == "delivered"], 10.0,
        "the alarm listed on the other node")
    assert [e["id"] for e in listed] == [request.webhook_id]


async def test_a_new_leader_rebuilds_the_rules_state_from_the_log(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """Two matching lines of a 4/30 rate and one of a log rule reach the leader, which
    delivers the log rule's alarm and then stops; the other node takes the lease, replays
    the log before the floor with notifications held back (the log rule's alarm is not
    sent again) and so counts the rate's two lines: two more fire the rate alarm, once."""
    nats = await asyncio.to_thread(new_nats, 3)
    hook = new_webhook()
    rules = "alarm-rate = hook 4/30 upstream timed out\nlog-alarm = hook ^boom"
    a, b, first = await two_nodes(nats, new_collector, hook, rules)
    other = b if first is a else a
    send([b"upstream timed out 1", b"boom", b"upstream timed out 2"], other.port("plain"))
    (boom,) = await asyncio.to_thread(wait_for, hook.accepted, 30.0, "the log alarm")
    await asyncio.sleep(1.5)  # the floor written past them
    await asyncio.to_thread(first.stop)
    await asyncio.to_thread(
        wait_for, lambda: other.get("/healthz")["alarms"]["mode"] == "live", 30.0,
        "the other node to lead")
    send([b"upstream timed out 3", b"upstream timed out 4"], other.port("plain"))
    await asyncio.to_thread(wait_for, lambda: len(hook.accepted()) >= 2, 15.0,
                            "the rate alarm")
    await asyncio.sleep(1.0)  # a repeat would be here by now
    assert [r.json()["condition"] for r in hook.accepted()] == ["log", "rate"]
    assert hook.accepted()[1].json()["count"] == 4
    assert hook.accepted()[0].webhook_id == boom.webhook_id
    metrics = other.metrics()
    assert metrics['collector_cluster_alarms_replay_suppressed_total{reason="floor"}'] == 1.0
    assert metrics["collector_cluster_alarms_leader"] == 1.0
    assert metrics["collector_cluster_leader_changes_total"] == 1.0


async def test_alarm_ids_hold_across_kill_9_of_the_leader_with_the_receiver_down(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """The receiver is down, lines through both nodes fire alarms, the leader is killed
    with SIGKILL while it writes them to the outbox; the other node takes the lease within
    seconds, replays from the floor, and once the receiver is back every alarm arrives,
    none under two ids (what it raised again has the ids the old leader gave)."""
    nats = await asyncio.to_thread(new_nats, 3)
    hook = new_webhook()
    rules = "log-alarm = hook ^order \\d+ failed"
    a, b, first = await two_nodes(nats, new_collector, hook, rules)
    survivor = b if first is a else a
    hook.stop()
    for n in range(20):
        send([f"order {n} failed".encode()], (a if n % 2 else b).port("plain"))
    # In the log (the survivor has them all), raised by the leader (some pending).
    await asyncio.to_thread(
        wait_for, lambda: len(survivor.get("/v1/logs?after=0&limit=100")["records"]) >= 20,
        15.0, "the lines of both nodes in the log")
    await asyncio.to_thread(wait_for, lambda: alarms(first, "state=pending"), 15.0,
                            "alarms pending on the leader")
    # More alarms keep coming through the survivor while the leader is killed: those of
    # its last second are in the outbox but not yet below its floor, so the next leader
    # raises them again from the log (and must find them under the same ids).
    streamer = Streamer(survivor.port("plain"), start=20)
    streamer.start()
    await asyncio.sleep(1.5)
    assert hook.accepted() == []
    killed_at = time.monotonic()
    first.kill9()
    await asyncio.sleep(0.5)
    streamer.halt.set()
    await asyncio.to_thread(streamer.join, 10.0)
    count = streamer.next
    hook.start()
    await asyncio.to_thread(wait_for, lambda: leader(survivor), 15.0,
                            "the other node to take the lease")
    took = time.monotonic() - killed_at
    await asyncio.to_thread(wait_for, hook.accepted, 20.0, "a first alarm after takeover")
    first_delivery = time.monotonic() - killed_at
    await asyncio.to_thread(
        wait_for, lambda: len({r.json()["message"] for r in hook.accepted()}) == count,
        30.0, "every alarm at the receiver")
    await asyncio.sleep(1.0)  # anything sent twice would be here by now
    accepted = hook.accepted()
    pairs = {(r.json()["alarm"], r.json()["message"]) for r in accepted}
    ids = {r.webhook_id for r in accepted}
    assert pairs == {("hook", f"order {n} failed") for n in range(count)}
    # No alarm under two ids: as many distinct ids as distinct alarms.
    assert len(ids) == len(pairs), sorted((r.json()["message"], r.webhook_id)
                                          for r in accepted)
    # And each once: nothing was delivered before the kill (the receiver was down), and
    # what the new leader raised again it found in the outbox instead of sending it twice.
    assert len(accepted) == len(ids)
    by_id = {e["id"] for e in alarms(survivor)}
    assert ids <= by_id
    print(f"\nkill -9 of the alarms leader: lease taken after {took:.2f} s, first alarm "
          f"delivered by the other node after {first_delivery:.2f} s; {len(pairs)} alarms "
          f"under {len(ids)} ids in {len(accepted)} requests")


async def test_a_dead_letter_retried_on_the_other_node_is_delivered_by_the_leader(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """An alarm the receiver refused until its one retry was used up is a dead letter,
    listed on both nodes; `collector alarms retry --dead` on the node that is not the
    leader puts it back, and the leader delivers it with the same id."""
    nats = await asyncio.to_thread(new_nats, 3)
    hook = new_webhook(status=500)
    rules = "log-alarm = hook ^disk full"
    a, b, first = await two_nodes(nats, new_collector, hook, rules, retries=1)
    other = b if first is a else a
    send([b"disk full on /var"], other.port("plain"))
    (dead,) = await asyncio.to_thread(wait_for, lambda: alarms(other, "state=dead"), 15.0,
                                      "a dead letter listed on the other node")
    refused = len(hook.requests)
    assert refused >= 1
    assert {r.webhook_id for r in hook.requests} == {dead["id"]}
    hook.status = 200
    retried = await asyncio.to_thread(other.cli, "alarms", "retry", "--dead")
    assert retried.returncode == 0, retried.stderr
    assert dead["id"] in retried.stdout
    (delivered,) = await asyncio.to_thread(wait_for, hook.accepted, 15.0,
                                           "the retried alarm delivered")
    assert delivered.webhook_id == dead["id"]
    await asyncio.to_thread(
        wait_for, lambda: [e for e in alarms(other, "state=delivered")
                           if e["id"] == dead["id"]], 10.0, "the alarm delivered, listed")


async def test_lines_that_came_before_any_leader_are_alarmed_by_the_first(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """The lease is held by no collector (a stranger's key, renewed while the lines are
    sent, then left to expire): lines sent meanwhile are in the log with no leader to
    evaluate them; the first leader, finding no floor, evaluates them and their alarms
    are delivered."""
    nats = await asyncio.to_thread(new_nats, 3)
    connection = Connection(ClusterConfig(nats=tuple(nats.urls), node="test", replicas=3))
    await connection.open()
    stranger: asyncio.Task[None] | None = None
    try:
        bucket = await connection.bucket(BUCKET, ttl=TTL_SECONDS, history=1)
        revision = await bucket.create(KEY, STRANGER)
        assert revision is not None
        # The stranger renews as a leader would: a collector that takes longer than the
        # TTL to start (it did on two busy cores) must still find the lease held.
        stranger = asyncio.create_task(renew(bucket, revision))
        hook = new_webhook()
        a = await asyncio.to_thread(node, new_collector, nats, "a", hook,
                                    "log-alarm = hook ^order \\d+ failed")
        assert leader(a) is None
        send([f"order {n} failed".encode() for n in range(3)], a.port("plain"))
        await asyncio.to_thread(wait_for, lambda: len(lines(a)) == 3, 15.0,
                                "the three lines in the log")
        assert leader(a) is None
        assert hook.requests == []
        assert not stranger.done(), stranger  # still renewing, not failed
    finally:
        if stranger is not None:
            stranger.cancel()
        await connection.close()
    await asyncio.to_thread(wait_for, lambda: leader(a), 15.0, "a to lead")
    await asyncio.to_thread(wait_for, lambda: len(hook.accepted()) == 3, 15.0,
                            "the three alarms")
    assert sorted(r.json()["message"] for r in hook.accepted()) == [
        f"order {n} failed" for n in range(3)]


async def renew(bucket: Bucket, revision: int) -> None:
    """Keep the stranger's lease, as its leader would, until cancelled."""
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        renewed = await bucket.update(KEY, STRANGER, revision)
        assert renewed is not None, "someone took the stranger's lease"
        revision = renewed


def lines(collector: CollectorProcess) -> list[str]:
    """The log lines the collector has stored (alarm records left out)."""
    found = collector.get("/v1/logs?after=0&limit=100")["records"]
    return [r["line"] for r in found if r["kind"] != "alarm"]


async def test_a_log_alarm_line_reaches_every_node_and_raises_nothing(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A `log:` alarm writes its line through the publisher, so both nodes store it; the
    line matches the rule that raised it, and still raises nothing more (alarm records
    are not evaluated): one alarm line, and one webhook, however long we wait."""
    nats = await asyncio.to_thread(new_nats, 3)
    hook = new_webhook()
    rules = "alarm = audit log:cluster\nlog-alarm = audit,hook disk failed"
    a, b, _ = await two_nodes(nats, new_collector, hook, rules)
    send([b"disk failed on sda"], a.port("plain"))

    def alarm_lines(collector: CollectorProcess) -> list[str]:
        found = collector.get("/v1/logs?after=0&limit=100")["records"]
        return [r["line"] for r in found if r["kind"] == "alarm"]
    for collector in (a, b):
        await asyncio.to_thread(wait_for, lambda c=collector: alarm_lines(c), 15.0,
                                "the alarm line on every node")
    await asyncio.sleep(2.0)  # a loop would have raised more by now
    for collector in (a, b):
        (line,) = alarm_lines(collector)
        assert "ALARM: cluster disk failed on sda" in line
    assert len(hook.requests) == 1


async def test_a_node_with_alarm_rules_starts_without_nats_and_alarms_once_it_is_up(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """No NATS server answers at start-up: the node starts anyway with its alarm rules,
    spools what it receives, and once NATS is up it takes the lease and alarms on the
    lines it spooled."""
    nats = await asyncio.to_thread(new_nats, 1)
    await asyncio.to_thread(nats.kill, 0)
    hook = new_webhook()
    collector = new_collector(config=NODE.format(
        nats=nats.urls[0], node="a", hook=hook.url, secret=HOOK_SECRET,
        rules="log-alarm = hook database is down", retries=1000).replace(
            "replicas = 3", "replicas = 1"))
    await asyncio.to_thread(collector.start, 40.0)
    assert collector.get("/healthz")["alarms"]["leader"] is False
    send([b"database is down (spooled)"], collector.port("plain"))
    await asyncio.to_thread(nats.restart, 0, 60.0)
    (request,) = await asyncio.to_thread(wait_for, hook.accepted, 40.0,
                                         "the alarm on the spooled line")
    assert request.json()["message"] == "database is down (spooled)"
    assert leader(collector) is collector


async def test_a_log_deleted_and_made_again_is_applied_and_alarmed_from_its_start(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """An operator deletes LOGS (a reset) while the node is down: on restart the node's
    applied position and the alarms floor lie past the new stream's end; the node applies
    the new stream from its start and alarms on it (before: nothing was materialized and
    every alarm was held back until the new stream outgrew the old one)."""
    nats = await asyncio.to_thread(new_nats, 1)
    hook = new_webhook()
    collector = new_collector(config=NODE.format(
        nats=nats.urls[0], node="a", hook=hook.url, secret=HOOK_SECRET,
        rules="log-alarm = hook database is down", retries=1000).replace(
            "replicas = 3", "replicas = 1"))
    await asyncio.to_thread(collector.start, 40.0)
    await asyncio.to_thread(wait_for, lambda: leader(collector), 30.0, "the alarms lease")
    # The fillers and the old alarm's line in two stream messages, however many
    # datagrams one wake-up of the listener reads: the reset is seen on restart only
    # while the old stream's last sequence is past the new one's.
    send([f"filler {i}".encode() for i in range(40)], collector.port("plain"))
    await asyncio.to_thread(
        wait_for, lambda: len(collector.get("/v1/logs?limit=100&after=0")["records"]) >= 40,
        20.0, "the fillers stored")
    send([b"database is down (old)"], collector.port("plain"))
    await asyncio.to_thread(wait_for, hook.accepted, 20.0, "the first alarm")
    await asyncio.sleep(1.5)  # the floor is written at most every second
    await asyncio.to_thread(collector.stop)
    nc = await nats_connect(nats.urls)
    await nc.jetstream().delete_stream("LOGS")
    await nc.close()
    await asyncio.to_thread(collector.start, 40.0)
    send([b"database is down (new)"], collector.port("plain"))
    await asyncio.to_thread(
        wait_for, lambda: len(hook.accepted()) >= 2, 30.0, "the alarm on the new stream")
    assert hook.accepted()[-1].json()["message"] == "database is down (new)"
    found = collector.get("/v1/logs?limit=100&after=0")
    records = found["records"] if isinstance(found, dict) else found
    assert records[-1]["line"] == "database is down (new)"
