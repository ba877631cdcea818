"""How quickly `collector cluster status` sees trouble, and what asking costs: three
nats-server processes and two collector nodes on 127.0.0.1 (tests/support's harness),
heartbeats every `--heartbeat` seconds (TTL three times that).

Printed: GET /v1/cluster latency (p50/p99 over `--probes` requests) and the wall time of
the `collector cluster status` command; after kill -9 of node B, the seconds until A's
status calls B stale and then missing; after kill -9 of one NATS server, the seconds
until `LOGS` shows a replica not current and, after its restart, until the status is
healthy again; after kill -9 of two of the three servers, the seconds until A's /healthz
stops claiming a quorum, and after their restart until it claims it again. The run takes
about a minute at `--heartbeat 1`, longer at the default 5.

    .venv/bin/python bench/cluster_status.py
    .venv/bin/python bench/cluster_status.py --heartbeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import env_note, percentile
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster

NODE = """[cluster]
nats = {nats}
node = {node}
replicas = 3
heartbeat = {heartbeat}

[listener:plain]
udp = 127.0.0.1:{{port:plain}}
format = socket
app = web
"""


def until(check: Callable[[], bool], limit: float, step: float = 0.1) -> float | None:
    """Seconds until `check()` holds (polled every `step`), or None after `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if check():
            return time.monotonic() - started
        time.sleep(step)
    return None


def state_of(collector: CollectorProcess, node: str) -> str | None:
    """The node's state in the collector's /v1/cluster, or None when it is not listed."""
    document: dict[str, Any] = collector.get("/v1/cluster")
    return next((n["state"] for n in document["nodes"] if n["node"] == node), None)


def healthy(collector: CollectorProcess) -> bool:
    """The collector's verdict."""
    return bool(collector.get("/v1/cluster")["healthy"])


def shown(seconds: float | None) -> str:
    """Seconds to one decimal, or `not within the limit`."""
    return "not within the limit" if seconds is None else f"{seconds:.1f} s"


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--probes", type=int, default=50)
    args = parser.parse_args()
    limit = 10 * args.heartbeat + 30
    print(env_note())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nats = NatsCluster(work / "nats", 3).start()
        nodes: list[CollectorProcess] = []
        try:
            for name in ("a", "b"):
                (work / name).mkdir()
                collector = CollectorProcess(work / name, config=NODE.format(
                    nats=",".join(nats.urls), node=name, heartbeat=args.heartbeat))
                collector.start(40.0)
                nodes.append(collector)
            a, b = nodes
            ready = until(lambda: healthy(a) and state_of(a, "b") == "up", limit)
            print(f"heartbeat {args.heartbeat:g} s (TTL {3 * args.heartbeat:g} s); "
                  f"healthy with both nodes after {shown(ready)}")
            took = []
            for _ in range(args.probes):
                started = time.monotonic()
                a.get("/v1/cluster")
                took.append(time.monotonic() - started)
            print(f"GET /v1/cluster: p50 {percentile(took, 0.5) * 1000:.1f} ms, "
                  f"p99 {percentile(took, 0.99) * 1000:.1f} ms over {args.probes}")
            walls = []
            for _ in range(3):
                started = time.monotonic()
                done = a.cli("cluster", "status")
                walls.append(time.monotonic() - started)
                assert done.returncode == 0, done.stdout + done.stderr
            print(f"`collector cluster status` wall time: median "
                  f"{statistics.median(walls):.2f} s (Python start-up included)")

            b.kill9()
            killed = time.monotonic()
            stale = until(lambda: state_of(a, "b") in ("stale", "missing"), limit)
            missing = until(lambda: state_of(a, "b") == "missing",
                            limit - (time.monotonic() - killed))
            missing_total = None if missing is None else time.monotonic() - killed
            print(f"kill -9 of node B: not up after {shown(stale)}, missing after "
                  f"{shown(missing_total)}")
            b.start(40.0)
            until(lambda: healthy(a), limit)

            connected = a.get("/v1/cluster")["servers"]["connected"]["url"]
            victim = next(i for i, n in enumerate(nats.nodes) if n.url != connected)
            nats.kill(victim)

            def short() -> bool:
                reasons = a.get("/v1/cluster")["reasons"]
                return any(r.startswith("stream LOGS:") for r in reasons)
            seen = until(short, limit)
            print(f"kill -9 of NATS server {nats.nodes[victim].name}: LOGS short of a "
                  f"current replica after {shown(seen)}")
            restarted = time.monotonic()
            nats.restart(victim, 60.0)
            back = until(lambda: healthy(a), limit)
            again = None if back is None else time.monotonic() - restarted
            print(f"  restarted: healthy {shown(again)} after the restart began")

            victims = [i for i, n in enumerate(nats.nodes) if n.url != connected]
            for index in victims:
                nats.kill(index)
            lost = until(lambda: a.get("/healthz")["cluster"]["quorum"] is False, limit)
            print(f"kill -9 of two NATS servers: /healthz quorum false after {shown(lost)}")
            restarted = time.monotonic()
            for index in victims:
                nats.restart(index, 60.0)
            regained = until(lambda: a.get("/healthz")["cluster"]["quorum"] is True, limit)
            total = None if regained is None else time.monotonic() - restarted
            print(f"  restarted: quorum true {shown(total)} after the restarts began")
            print(json.dumps({"heartbeat": args.heartbeat, "stale": stale,
                              "missing": missing_total, "nats_short": seen,
                              "quorum_lost": lost}))
        finally:
            for collector in nodes:
                collector.close()
            nats.stop()


if __name__ == "__main__":
    main()
