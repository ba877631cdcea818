"""Acknowledged means replicated (issue 9), end to end with real nats-server and real
collector processes: a listener counts a line accepted only once JetStream acknowledged
it or the spool holds it; a node starts while NATS is unreachable; one node's lines land
in the stream in the order it accepted them across a full outage and a leader's SIGKILL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_cluster import NODE, Sender, accepted, lines, node, wait_lines
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.send import send

pytestmark = pytest.mark.e2e

SPOOLED = 'collector_cluster_spool{unit="lines"}'
ACKED = "collector_cluster_acked_lines_total"


def safe(metrics: dict[str, float]) -> float:
    """Lines the node can vouch for: acknowledged by JetStream or held by its spool."""
    return metrics.get(ACKED, 0.0) + metrics.get(SPOOLED, 0.0)


async def test_lines_count_as_accepted_only_once_acknowledged_or_spooled(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """With two of three NATS servers down (no quorum, publishes wait for their time-out),
    `collector_lines_accepted_total` never runs ahead of the lines acknowledged plus the
    lines in the spool; all of them count once spooled, and stay counted once drained."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    send((f"warm {i}".encode() for i in range(10)), a.port("plain"))
    await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get(ACKED, 0) >= 10, 20.0, "the first lines acked")
    nats.kill(1)
    nats.kill(2)
    send((f"no-quorum {i}".encode() for i in range(40)), a.port("plain"))
    samples = []
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline:
        metrics = await asyncio.to_thread(a.metrics)
        samples.append((metrics.get('collector_lines_accepted_total{listener="plain"}', 0.0),
                         safe(metrics)))
        if samples[-1][0] >= 50 and metrics.get(SPOOLED, 0) >= 40:
            break
        await asyncio.sleep(0.1)
    ahead = [(count, vouched) for count, vouched in samples if count > vouched]
    assert not ahead, f"accepted ran ahead of acked + spooled: {ahead[:5]}"
    assert samples[-1][0] == 50, samples[-1]
    await asyncio.to_thread(nats.restart, 1, 60.0)
    await asyncio.to_thread(nats.restart, 2, 60.0)
    drained = await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get(SPOOLED, 1) == 0 and m.get(ACKED, 0) >= 50, 60.0,
        "the spool to drain")
    assert drained['collector_lines_accepted_total{listener="plain"}'] == 50
    got = await asyncio.to_thread(wait_lines, a, 50, 30.0)
    assert sorted(r["line"] for r in got) == sorted(
        [f"warm {i}" for i in range(10)] + [f"no-quorum {i}" for i in range(40)])


async def test_a_node_starts_while_nats_is_unreachable_and_catches_up(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """No NATS server answers at start-up: the node starts all the same (/healthz: no
    quorum), accepts into its spool, and once NATS is up publishes, materializes and
    serves the lines, every one once."""
    nats = await asyncio.to_thread(new_nats, 1)
    nats.kill(0)
    a = new_collector(config=NODE.format(replicas=1, nats=nats.urls[0], node="a", extra=""))
    await asyncio.to_thread(a.start, 40.0)
    assert a.get("/healthz")["cluster"] == {"node": "a", "quorum": False}
    send((f"early {i}".encode() for i in range(30)), a.port("plain"))
    spooled = await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get(SPOOLED, 0) == 30, 20.0, "30 lines spooled")
    assert spooled['collector_lines_accepted_total{listener="plain"}'] == 30
    assert lines(a) == []
    await asyncio.to_thread(nats.restart, 0, 60.0)
    got = await asyncio.to_thread(wait_lines, a, 30, 60.0)
    assert [r["line"] for r in got] == [f"early {i}" for i in range(30)]
    await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get(SPOOLED, 1) == 0, 20.0, "the spool to drain")
    send((f"later {i}".encode() for i in range(5)), a.port("plain"))
    got = await asyncio.to_thread(wait_lines, a, 35, 20.0)
    assert [r["line"] for r in got][30:] == [f"later {i}" for i in range(5)]
    assert a.get("/healthz")["cluster"] == {"node": "a", "quorum": True}


async def test_a_missing_creds_file_fails_at_start_not_in_retries(
        tmp_path: Path, new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Bad settings are not an outage: a creds file that is not there stops start-up with
    a config error (exit 2) that names the key, instead of retrying NATS for ever."""
    missing = tmp_path / "nope.creds"
    a = new_collector(config=NODE.format(replicas=1, nats="nats://127.0.0.1:1", node="a",
                                         extra=f"creds = {missing}\n"))
    with pytest.raises(AssertionError, match="exited with 2") as failed:
        await asyncio.to_thread(a.start, 20.0)
    assert "creds" in str(failed.value)
    assert str(missing) in str(failed.value)


def by_sender(collector: CollectorProcess, count: int) -> list[int]:
    """The numbers of the `seq N` lines on the node, in id order."""
    got = wait_lines(collector, count, 60.0)
    ids = [r["id"] for r in got]
    assert ids == sorted(ids)
    return [int(r["line"].split()[1]) for r in got if r["line"].startswith("seq ")]


async def test_one_nodes_lines_keep_their_order_across_an_outage_and_a_failover(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Numbered lines sent to A throughout a full NATS outage and then a SIGKILL of the
    stream's leader: on both nodes they appear in ascending order by id, every one sent,
    none twice, and A counted each accepted once."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    b = await asyncio.to_thread(node, new_collector, nats, "b")
    sender = Sender(a.port("plain"), limit=20_000, seconds=60.0)
    sender.start()
    await asyncio.to_thread(wait_lines, b, 100)
    for index in range(3):
        nats.kill(index)
    await asyncio.sleep(3.0)
    await asyncio.to_thread(nats.restart_all, 60.0)
    await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get(SPOOLED, 1) == 0, 60.0, "the spool to drain")
    detail = next(d for d in (n.jsz_stream("LOGS") for n in nats.nodes) if d)
    leader = nats.index(detail["cluster"]["leader"])
    nats.kill(leader)
    await asyncio.sleep(4.0)
    sender.halt.set()
    await asyncio.to_thread(sender.join, 10.0)
    await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get(SPOOLED, 1) == 0, 60.0, "the spool to drain")
    sent = list(range(sender.sent))
    assert accepted(a) == sender.sent
    for collector in (a, b):
        numbers = await asyncio.to_thread(by_sender, collector, sender.sent)
        assert len(numbers) == len(set(numbers)), "a line stored twice"
        assert sorted(numbers) == sent, "lines missing"
        assert numbers == sent, "lines out of order"
