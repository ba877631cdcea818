"""An alert firing when the alarms leader stops is resolved by the next leader, in
cluster mode (three nats-server, two collector nodes, a real webhook receiver), though
the line that fired it lies before the new leader's replay: the takeover restores it
from the outbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.e2e.test_cluster_alarms import two_nodes
from tests.e2e.test_resolve import FULL
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.net import wait_for
from tests.support.send import send
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.e2e

RESOLVE_AFTER = 20.0


async def test_the_next_leader_resolves_a_backlog_the_old_one_paged(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A full queue pages through the leader; seconds of other lines move the floor well
    past it (the replay's window is alarm-freq's 1 s); the leader stops before the queue
    counts as cleared; the other node takes over and, the queue staying quiet, sends
    exactly one resolved notification with the firing one's group and alert."""
    nats = await asyncio.to_thread(new_nats, 3)
    hook = new_webhook()
    rules = (f"alarm-backlog = hook\nalarm-resolve-after = {RESOLVE_AFTER:g}\n"
             "alarm-freq = 1")
    a, b, first = await two_nodes(nats, new_collector, hook, rules)
    other = b if first is a else a
    sent_at = time.monotonic()
    send([FULL.encode()], other.port("plain"))
    (firing,) = await asyncio.to_thread(wait_for, hook.accepted, 15.0, "the backlog alarm")
    for n in range(20):
        send([f"quiet line {n}".encode()], other.port("plain"))
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.5)  # the floor written past them
    await asyncio.to_thread(first.stop)
    # Else the old leader might have resolved it itself, and this would prove nothing.
    assert time.monotonic() - sent_at < RESOLVE_AFTER - 2, "too slow to stop in time"
    assert [r.json()["status"] for r in hook.accepted()] == ["firing"]
    await asyncio.to_thread(
        wait_for, lambda: other.get("/healthz")["alarms"]["mode"] == "live", 30.0,
        "the other node to lead")
    await asyncio.to_thread(wait_for, lambda: len(hook.accepted()) >= 2,
                            RESOLVE_AFTER + 15.0, "the resolved notification")
    await asyncio.sleep(2.0)  # a second one would be here by now
    sent = [r.json() for r in hook.accepted()]
    assert [p["status"] for p in sent] == ["firing", "resolved"], sent
    resolved = sent[1]
    assert (resolved["group"], resolved["alert"]) == (firing.json()["group"],
                                                      firing.json()["alert"])
    assert resolved["alert"].startswith("alt_")
