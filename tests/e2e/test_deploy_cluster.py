"""deploy/cluster/: the example collector configs load with the real config loader, and
the three example NATS configs are valid (`nats-server -t`) and, with their addresses
rewritten to free loopback ports, form a JetStream cluster that takes an R3 bucket."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.cluster.connection import Connection
from collector.config.load import load_config
from collector.config.model import ClusterConfig, Config
from logwire.native import generate_key
from tests.support.nats import NatsNode, nats_server_binary
from tests.support.net import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "deploy" / "cluster"
NODES = {"col-a": CLUSTER / "col-a.ini", "col-b": CLUSTER / "col-b.ini"}
NATS = [CLUSTER / f"nats-{i}.conf" for i in (1, 2, 3)]
ENV = {"LOG_SECRET": "cluster-example-secret-32-bytes!", "LOG_KEY": generate_key().token,
       "COLLECTOR_TOKEN": "t" * 32,
       "HOOK_SECRET": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
def load_example(path: Path) -> Config:
    """One example node config, loaded with the real loader (rules beside [cluster])."""
    return load_config(path, env=ENV)


def test_cluster_example_collector_configs_load() -> None:
    """Both nodes' configs load: the three NATS servers, R3, their own node names, the
    same listeners and alarm rules, and no other difference than name and address."""
    configs = {name: load_example(path) for name, path in NODES.items()}
    for name, config in configs.items():
        assert config.cluster is not None
        assert config.cluster.node == name
        assert config.cluster.nats == ("nats://10.0.0.1:4222", "nats://10.0.0.2:4222",
                                       "nats://10.0.0.3:4222")
        assert config.cluster.replicas == 3
        assert config.cluster.heartbeat == 5.0
        assert config.http.token
        assert [(lst.name, lst.port) for lst in config.listeners] == [("crypto", 1717),
                                                                      ("native", 1719)]
    a, b = (NODES[name].read_text().splitlines() for name in ("col-a", "col-b"))
    differ = [(x, y) for x, y in zip(a, b, strict=True) if x != y]
    assert [x.split("=")[0].strip() for x, _ in differ[1:]] == ["http", "node"]


def test_cluster_example_nats_configs_are_valid() -> None:
    """`nats-server -t` accepts each file as it ships."""
    for path in NATS:
        done = subprocess.run([str(nats_server_binary()), "-t", "-c", str(path)],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def example_nats(tmp_path: Path) -> Iterator[list[NatsNode]]:
    """The three example NATS configs, each machine's address and ports rewritten to
    loopback ports of its own and the store to a temp dir, started; stopped after."""
    nodes = [NatsNode(tmp_path / f"nats-{i}", f"nats-{i}") for i in (1, 2, 3)]
    ports = {}
    for i, node in enumerate(nodes, 1):
        ports[f"10.0.0.{i}:4222"] = f"127.0.0.1:{node.client_port}"
        ports[f"10.0.0.{i}:6222"] = f"127.0.0.1:{node.cluster_port}"
        ports[f"10.0.0.{i}:8222"] = f"127.0.0.1:{node.http_port}"
    for path, node in zip(NATS, nodes, strict=True):
        text = re.sub(r"10\.0\.0\.\d:\d+", lambda m: ports[m.group(0)], path.read_text())
        assert not re.search(r"^[^#]*10\.0\.0\.", text, re.MULTILINE), text
        node.workdir.mkdir(parents=True)
        node.config_path.write_text(text.replace("/var/lib/nats/jetstream",
                                                 str(node.store_dir)))
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def test_cluster_example_nats_configs_form_a_jetstream_cluster(
        example_nats: list[NatsNode]) -> None:
    """Routed by the example configs alone, the three servers elect a meta leader and
    hold an R3 KV bucket (which needs three JetStream servers in one cluster)."""
    await asyncio.to_thread(
        wait_for, lambda: all(node.healthy(clustered=True) for node in example_nats),
        40.0, "the example NATS cluster to be healthy", 0.2)
    _, jsz = example_nats[0].monitor("/jsz")
    assert jsz["meta_cluster"]["cluster_size"] == 3
    connection = Connection(ClusterConfig(nats=tuple(n.url for n in example_nats),
                                          node="check", replicas=3))
    await connection.open()
    try:
        bucket = await connection.bucket("deploy-check")
        revision = await bucket.put("k", b"v")
        item = await bucket.get("k")
        assert item is not None
        assert (item.value, item.revision) == (b"v", revision)
    finally:
        await connection.close()
