"""Two collector nodes on one three-server NATS JetStream cluster (docs/CLUSTER.md, first
slice): one log readable from every node, in one order with one cursor, and a full NATS
outage absorbed by the spool."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.net import wait_for
from tests.support.send import send

pytestmark = pytest.mark.e2e

NODE = """[cluster]
nats = {nats}
node = {node}
replicas = 3

[listener:plain]
udp = 127.0.0.1:{{port:plain}}
format = socket
app = web
"""


def node(new_collector: Callable[..., CollectorProcess], nats: NatsCluster,
         name: str) -> CollectorProcess:
    """A started collector node of the cluster."""
    collector = new_collector(config=NODE.format(nats=",".join(nats.urls), node=name))
    collector.start(timeout=40.0)
    return collector


def lines(collector: CollectorProcess, query: str = "") -> list[dict[str, Any]]:
    """Every line `GET /v1/logs` returns, oldest first."""
    got = collector.get(f"/v1/logs?limit=10000{query or '&after=0'}")
    records: list[dict[str, Any]] = got["records"] if isinstance(got, dict) else got
    return records


def wait_lines(collector: CollectorProcess, count: int, timeout: float = 20.0
               ) -> list[dict[str, Any]]:
    """The node's lines once it has `count` of them."""
    found: list[dict[str, Any]] = []

    def ready() -> bool:
        found[:] = lines(collector)
        return len(found) >= count
    # On time-out the caller compares what came, to say which lines did not.
    with contextlib.suppress(AssertionError):
        wait_for(ready, timeout, f"{count} lines on {collector.url}")
    return found


async def test_lines_sent_to_either_node_are_read_from_both_in_one_order(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Lines to A and to B come back from both nodes with the same ids in the same order,
    and a cursor taken on A continues on B with no gap and no repeat."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    b = await asyncio.to_thread(node, new_collector, nats, "b")
    send((f"from-a {i}".encode() for i in range(50)), a.port("plain"))
    send((f"from-b {i}".encode() for i in range(50)), b.port("plain"))
    on_a = await asyncio.to_thread(wait_lines, a, 100)
    on_b = await asyncio.to_thread(wait_lines, b, 100)
    assert [(r["id"], r["line"]) for r in on_a] == [(r["id"], r["line"]) for r in on_b]
    assert {r["line"] for r in on_a} == ({f"from-a {i}" for i in range(50)}
                                        | {f"from-b {i}" for i in range(50)})
    ids = [r["id"] for r in on_a]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    cursor = on_a[39]["id"]
    rest = lines(b, f"&after={cursor}")
    assert [r["id"] for r in rest] == ids[40:]
    health = b.get("/healthz")
    assert health["cluster"] == {"node": "b", "quorum": True}


async def test_a_full_nats_outage_spools_and_drains_with_nothing_lost_or_doubled(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """With every NATS server down, lines go to the spool (/metrics shows it); when NATS
    is back the spool drains and every line is on both nodes exactly once."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    b = await asyncio.to_thread(node, new_collector, nats, "b")
    send((f"before {i}".encode() for i in range(20)), a.port("plain"))
    await asyncio.to_thread(wait_lines, b, 20)
    for index in range(3):
        nats.kill(index)
    deadline = time.monotonic() + 30
    sent = 0
    while time.monotonic() < deadline:
        send((f"during {sent + i}".encode() for i in range(10)), a.port("plain"))
        sent += 10
        spooled = a.metrics().get('collector_cluster_spool{unit="lines"}', 0)
        if spooled > 0 and sent >= 50:
            break
        await asyncio.sleep(0.2)
    assert a.metrics().get('collector_cluster_spool{unit="lines"}', 0) > 0
    await asyncio.to_thread(nats.restart_all, 60.0)
    expected = {f"before {i}" for i in range(20)} | {f"during {i}" for i in range(sent)}
    for collector in (a, b):
        got = await asyncio.to_thread(wait_lines, collector, len(expected), 60.0)
        texts = [r["line"] for r in got]
        assert sorted(texts) == sorted(expected)
    drained = await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get('collector_cluster_spool{unit="lines"}', 1) == 0,
        30.0, "the spool to drain")
    assert drained['collector_cluster_acked_lines_total'] >= len(expected)
