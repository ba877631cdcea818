"""Silences in cluster mode over real processes (alarms.silence_kv): two collector nodes
on one real JetStream and a real webhook receiver. A silence made with the CLI on the
node that is not the alarms leader holds back the leader's matching alarm and not another
one, is listed on the other node, survives a restart of both nodes, and stops holding once
expired on the other node."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from tests.support.alarms_api import wait_alarms
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.net import wait_for
from tests.support.send import send
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.e2e

FIVE = "GET /pay => generated 0 bytes in 3 msecs (HTTP/1.1 503) 2 headers"
ORDER = "order 7 failed"
NODE = """[cluster]
nats = {nats}
node = {node}
replicas = 1

[listener:plain]
udp = 127.0.0.1:{{port:plain}}
format = socket
app = shop

[app:shop]
alarm = five webhook:{hook}/five;timeout=2
alarm = order webhook:{hook}/order;timeout=2
log-alarm = five HTTP/1\\.1 5\\d\\d
log-alarm = order ^order \\d+ failed
# Every 5xx is its own alarm here, not a repeat held back by alarm-freq.
alarm-freq = 0.1
"""


def messages(hook: WebhookServer) -> list[str]:
    """The messages the receiver accepted, in arrival order."""
    return [r.json()["message"] for r in hook.accepted()]


def live_leader(*nodes: CollectorProcess) -> CollectorProcess | None:
    """The node whose alarms leader is live (evaluating), if one is."""
    live = [n for n in nodes if n.get("/healthz")["alarms"]["mode"] == "live"]
    return live[0] if len(live) == 1 else None


def silenced(collector: CollectorProcess, count: int) -> list[str]:
    """Wait for `count` silenced alarms in the shared outbox; their silence ids."""
    return [e["silence"] for e in wait_alarms(collector, "state=silenced", count,
                                              f"{count} silenced alarm(s)", within=20.0)]


def test_a_silence_made_on_one_node_holds_the_leaders_alarms_until_expired_on_another(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """`silence add` on the follower holds back the leader's 5xx alarm (silenced, with the
    silence's id) while the order alarm is delivered; the leader lists it; after both
    nodes restart it still holds; `silence expire` on the other node ends it, and the
    next 5xx is delivered."""
    nats = new_nats(1)
    hook = new_webhook()
    a, b = (new_collector(config=NODE.format(nats=nats.urls[0], node=name, hook=hook.url))
            for name in ("a", "b"))
    for collector in (a, b):
        collector.start(timeout=40.0)
    leader = wait_for(lambda: live_leader(a, b), 30.0, "a live alarms leader")
    other = b if leader is a else a

    made = other.cli("silence", "add", "--app", "shop", "--alarm", "five", "--for", "1h",
                     "--comment", "deploying", "--by", "ana")
    assert made.returncode == 0, made.stderr
    silence_id = made.stdout.strip()
    assert silence_id.startswith("sil_"), made.stdout
    # The leader learns of it through its watch of the bucket, a moment later.
    wait_for(lambda: [s["id"] for s in leader.get("/v1/silences")["silences"]]
             == [silence_id], 5.0, "the silence on the leader")
    send([FIVE.encode(), ORDER.encode()], other.port("plain"))
    wait_for(lambda: messages(hook) == [ORDER], 15.0, "the order alarm delivered")
    assert silenced(leader, 1) == [silence_id]
    listed = leader.cli("silence", "list")
    assert listed.returncode == 0, listed.stderr
    assert silence_id in listed.stdout
    assert "by ana: deploying" in listed.stdout

    for collector in (a, b):
        collector.stop()
    for collector in (a, b):
        collector.start(timeout=40.0)
    leader = wait_for(lambda: live_leader(a, b), 30.0, "a live alarms leader again")
    for collector in (a, b):
        assert [s["id"] for s in collector.get("/v1/silences")["silences"]] == [silence_id]
    send([FIVE.encode(), ORDER.encode()], leader.port("plain"))
    wait_for(lambda: messages(hook) == [ORDER, ORDER], 15.0, "the second order alarm")
    assert silenced(other, 2) == [silence_id, silence_id]

    # Expired on the node it was not made on (after the restart, whichever leads).
    expirer = a if other is b else b
    expired = expirer.cli("silence", "expire", silence_id, "--by", "bo")
    assert expired.returncode == 0, expired.stderr
    wait_for(lambda: all(c.get("/v1/silences")["silences"] == [] for c in (a, b)), 5.0,
             "the expiry seen on every node")
    send([FIVE.encode()], other.port("plain"))
    wait_for(lambda: messages(hook) == [ORDER, ORDER, FIVE], 15.0, "a 5xx alarm delivered")
    assert len(wait_alarms(leader, "state=silenced", 2, "still two silenced")) == 2

    created = re.findall(r"\] silence_created .*?by=(\S+) .*?id=(sil_\w+)", other.output())
    assert created == [("ana", silence_id)]
    gone = re.findall(r"\] silence_expired .*?by=(\S+) .*?id=(sil_\w+)", expirer.output())
    assert gone == [("bo", silence_id)]


def test_silences_answer_503_until_the_node_reaches_nats(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A node started while no NATS server answers serves `/v1/silences` with a 503 that
    says why (and the CLI exits non-zero with it); once NATS is up, the same request
    makes the silence."""
    nats = new_nats(1)
    nats.kill(0)
    hook = new_webhook()
    collector = new_collector(config=NODE.format(nats=nats.urls[0], node="a",
                                                 hook=hook.url))
    collector.start(timeout=40.0)
    status, body = collector.request("/v1/silences")
    assert status == 503
    assert "has not reached the cluster (NATS) yet" in json.loads(body)["error"]
    refused = collector.cli("silence", "add", "--app", "shop", "--for", "1h",
                            "--comment", "x")
    assert refused.returncode != 0
    assert "503" in refused.stderr
    assert "has not reached the cluster (NATS) yet" in refused.stderr
    nats.restart(0, 60.0)

    def made() -> bool:
        status, _ = collector.request("/v1/silences", "POST", {
            "app": "shop", "for": "1h", "comment": "x"})
        return status == 201

    wait_for(made, 40.0, "a silence made once NATS is up")
    assert len(collector.get("/v1/silences")["silences"]) == 1
