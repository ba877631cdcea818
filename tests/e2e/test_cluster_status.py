"""Operators can see the cluster (issue 9): heartbeats in the `nodes` bucket,
`GET /v1/cluster`, `collector cluster status`, the figures in /metrics and the quorum in
/healthz, against three real nats-server processes and two real collector nodes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.test_cluster import NODE
from tests.e2e.test_cluster import node as cluster_node
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.net import wait_for

pytestmark = pytest.mark.e2e

def node(new_collector: Callable[..., CollectorProcess], nats: NatsCluster,
         name: str) -> CollectorProcess:
    """A started collector node with a heartbeat every second (TTL 3 s), so that a killed
    node shows as missing quickly."""
    return cluster_node(new_collector, nats, name, extra="heartbeat = 1")


def status(collector: CollectorProcess) -> tuple[int, dict[str, Any], str]:
    """`collector cluster status --json` against the node: exit code, document, stderr."""
    done = collector.cli("cluster", "status", "--json")
    document = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, document, done.stderr


def wait_status(collector: CollectorProcess, ready: Callable[[int, dict[str, Any]], bool],
                timeout: float, what: str) -> tuple[int, dict[str, Any]]:
    """Run the status command until `ready(code, document)` holds."""
    last: list[tuple[int, dict[str, Any], str]] = []

    def check() -> tuple[int, dict[str, Any]] | None:
        last[:] = [status(collector)]
        code, document, _ = last[0]
        return (code, document) if ready(code, document) else None

    try:
        return wait_for(check, timeout, what, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {last}") from None


def healthy(code: int, document: dict[str, Any]) -> bool:
    """Exit 0 and every part of the verdict clear."""
    return code == 0 and document.get("healthy") is True


async def test_status_shows_both_nodes_and_names_a_killed_one(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Both nodes and every stream show, with exit 0; the figures are in /metrics; after
    kill -9 of node B its heartbeat expires and status on A exits 1 naming it; restarted,
    B is back; stopped cleanly, B has left and is not missing."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    b = await asyncio.to_thread(node, new_collector, nats, "b")
    code, document = await asyncio.to_thread(
        wait_status, a, lambda c, d: healthy(c, d) and len(d["nodes"]) == 2, 30.0,
        "a healthy status with both nodes")
    assert [(n["node"], n["state"]) for n in document["nodes"]] == [("a", "up"), ("b", "up")]
    streams = {s["name"]: s for s in document["streams"]}
    assert {"LOGS", "KV_nodes"} <= set(streams)
    logs = streams["LOGS"]
    assert logs["replicas"] == 3
    assert logs["leader"] in {"n0", "n1", "n2"}
    assert sorted(logs["current"]) == ["n0", "n1", "n2"]
    assert [s["answers"] for s in document["servers"]["configured"]] == [True] * 3
    assert document["servers"]["connected"]["server_name"] in {"n0", "n1", "n2"}
    listeners = document["nodes"][0]["listeners"]
    assert listeners == [{"name": "plain", "udp": f"127.0.0.1:{a.port('plain')}",
                          "format": "socket"}]
    text = a.cli("cluster", "status")
    assert text.returncode == 0, text.stderr
    assert "cluster healthy" in text.stdout
    assert "NODES" in text.stdout
    assert "LOGS" in text.stdout
    metrics = await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get('collector_cluster_nodes{state="up"}') == 2, 10.0,
        "both nodes up in /metrics")
    assert metrics['collector_cluster_stream_replicas{state="current",stream="LOGS"}'] == 3
    assert metrics['collector_cluster_stream_leader{stream="LOGS"}'] == 1
    assert metrics["collector_cluster_quorum"] == 1
    assert a.get("/healthz")["cluster"] == {"node": "a", "quorum": True}

    b.kill9()
    code, document = await asyncio.to_thread(
        wait_status, a, lambda c, d: c == 1 and any(
            r.startswith("node b: missing") for r in d["reasons"]),
        20.0, "status to name the killed node missing (stale first, until NATS expires it)")
    assert [(n["node"], n["state"]) for n in document["nodes"]] == [("a", "up"),
                                                                    ("b", "missing")]
    assert document["healthy"] is False
    text = a.cli("cluster", "status")
    assert text.returncode == 1
    assert "node b: missing" in text.stdout
    metrics = await asyncio.to_thread(
        a.wait_metrics, lambda m: m.get('collector_cluster_nodes{state="missing"}') == 1,
        10.0, "the missing node in /metrics")
    assert metrics['collector_cluster_nodes{state="up"}'] == 1

    # Restarted, it beats again and the cluster is whole with no manual step.
    await asyncio.to_thread(b.start, 40.0)
    await asyncio.to_thread(
        wait_status, a, lambda c, d: healthy(c, d) and len(d["nodes"]) == 2, 30.0,
        "a healthy status once B is back")

    # Stopped cleanly, B says it left: not missing, also once its heartbeat expired.
    assert b.stop() == 0
    code, document = status(a)[:2]
    assert (code, [(n["node"], n["state"]) for n in document["nodes"]]) == (
        0, [("a", "up"), ("b", "left")])
    await asyncio.sleep(4.0)  # past the 3 s TTL
    code, document = status(a)[:2]
    assert (code, [n["node"] for n in document["nodes"]]) == (0, ["a"])


async def test_a_killed_nats_server_shows_as_replicas_not_current_until_restarted(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """kill -9 of one NATS server: status exits 1 with `LOGS` short of current replicas
    and the server not answering; restarted, it catches up and status exits 0."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    await asyncio.to_thread(wait_status, a, healthy, 30.0, "a healthy status")
    victim = next(i for i, n in enumerate(nats.nodes) if n.url not in (
        a.get("/v1/cluster")["servers"]["connected"].get("url") or ""))
    nats.kill(victim)
    name = nats.nodes[victim].name
    _, document = await asyncio.to_thread(
        wait_status, a, lambda c, d: c == 1 and any(
            r.startswith("stream LOGS: 2 of 3 replicas current") for r in d["reasons"]),
        30.0, "status to report LOGS short of a replica")
    logs = next(s for s in document["streams"] if s["name"] == "LOGS")
    assert name not in logs["current"]
    assert any(r.startswith(f"nats server {nats.nodes[victim].url}: does not answer")
               for r in document["reasons"])
    # The node still reaches a quorum: two of three servers hold every stream (once
    # they have elected a new leader, if the victim led `LOGS`: seconds, not at once).
    await asyncio.to_thread(
        wait_for, lambda: a.get("/healthz")["cluster"]["quorum"] is True, 30.0,
        "quorum with two of three servers")
    await asyncio.to_thread(nats.restart, victim)
    await asyncio.to_thread(wait_status, a, healthy, 60.0, "a healthy status after restart")


async def test_cluster_status_on_a_single_node_collector_and_an_unreachable_one(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A collector without [cluster] answers 404 "not in cluster mode" and the command
    says so (exit 4, an API error); a collector that does not answer is exit 4 too."""
    single = new_collector(config="[listener:plain]\nudp = 127.0.0.1:{port:plain}\n"
                           "format = socket\n")
    await asyncio.to_thread(single.start)
    code, body = single.request("/v1/cluster")
    assert code == 404
    assert "not in cluster mode" in json.loads(body)["error"]
    done = single.cli("cluster", "status")
    assert done.returncode == 4
    assert "not in cluster mode" in done.stderr
    single.stop()
    done = single.cli("cluster", "status")
    assert done.returncode == 4
    assert "cannot reach the collector" in done.stderr


def test_cluster_status_needs_a_subcommand() -> None:
    """`collector cluster` alone is a usage error (argparse's exit 2)."""
    done = subprocess.run([sys.executable, "-m", "collector", "cluster"], capture_output=True,
                          text=True, check=False, timeout=30)
    assert done.returncode == 2
    assert "status" in done.stderr


async def test_healthz_quorum_follows_the_stream_leader_without_traffic(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """With two of three NATS servers killed and no line published, /healthz stops
    claiming a quorum within a few heartbeats (the stream has no leader), and /metrics
    and status agree; with the servers back, the quorum returns."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    await asyncio.to_thread(wait_status, a, healthy, 30.0, "a healthy status")
    assert a.get("/healthz")["cluster"]["quorum"] is True
    connected = a.get("/v1/cluster")["servers"]["connected"]["url"]
    victims = [i for i, n in enumerate(nats.nodes) if n.url != connected]
    assert len(victims) == 2
    for index in victims:
        nats.kill(index)
    await asyncio.to_thread(
        wait_for, lambda: a.get("/healthz")["cluster"]["quorum"] is False, 20.0,
        "/healthz to report no quorum")
    assert a.metrics()["collector_cluster_quorum"] == 0
    code, document, _ = await asyncio.to_thread(status, a)
    assert code == 1
    assert document["healthy"] is False
    for index in victims:
        # One back makes two of three: a quorum again, so each restart gets healthy.
        await asyncio.to_thread(nats.restart, index, 60.0)
    await asyncio.to_thread(
        wait_for, lambda: a.get("/healthz")["cluster"]["quorum"] is True, 30.0,
        "/healthz to report the quorum back")


async def test_heartbeat_failures_are_logged_once_per_outage_and_counted(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """One NATS server (replicas 1): status is healthy with it; while it is down every
    failed heartbeat is counted, logged once, and status says NATS does not answer (exit
    1, not a crash); back, the heartbeat recovers by itself."""
    nats = await asyncio.to_thread(new_nats, 1)
    a = new_collector(config=NODE.format(nats=nats.urls[0], node="a", replicas=1,
                                         extra="heartbeat = 1"))
    await asyncio.to_thread(a.start, 40.0)
    _, document = await asyncio.to_thread(wait_status, a, healthy, 30.0, "healthy, R1")
    logs = next(s for s in document["streams"] if s["name"] == "LOGS")
    assert (logs["replicas"], len(logs["current"])) == (1, 1)
    nats.kill(0)
    failed = 'collector_cluster_heartbeat_failures_total{step="heartbeat"}'
    await asyncio.to_thread(a.wait_metrics, lambda m: m.get(failed, 0) >= 3, 30.0,
                            "three failed heartbeats")
    code, document, _ = await asyncio.to_thread(status, a)
    assert code == 1
    assert any(r.startswith(f"nats server {nats.urls[0]}: does not answer")
               for r in document["reasons"])
    assert a.get("/healthz")["cluster"]["quorum"] is False
    await asyncio.to_thread(nats.restart, 0)
    await asyncio.to_thread(wait_status, a, healthy, 40.0, "healthy again")
    output = a.output()
    assert output.count("heartbeat_failed") == 1, output
    assert output.count("heartbeat_recovered") == 1, output
