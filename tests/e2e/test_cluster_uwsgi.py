"""Real uWSGI dynos shipping to different nodes of a cluster (three nats-server on
loopback): one through `logger = crypto:` to node A, one through the native sidecar to
node B; both nodes show both dynos' lines, with the same ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from logwire.native import generate_key
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.net import free_udp_port, wait_for
from tests.support.shipper_proc import shipper, shipper_env
from tests.support.uwsgi_proc import UwsgiProcess

pytestmark = [pytest.mark.e2e, pytest.mark.uwsgi]

SECRET = "a-secret-that-is-thirty-two-byte"
KEY = generate_key()
NODE = """[cluster]
nats = {nats}
node = {node}
replicas = 3

[listener:crypto]
udp = 127.0.0.1:{{port:crypto}}
format = crypto
secret = $(LOG_SECRET)

[listener:native]
udp = 127.0.0.1:{{port:native}}
format = native
key = $(LOG_KEY)
"""


def node(new_collector: Callable[..., CollectorProcess], nats: NatsCluster,
         name: str) -> CollectorProcess:
    """A started node with a crypto and a native listener."""
    collector = new_collector(config=NODE.format(nats=",".join(nats.urls), node=name),
                              env={"LOG_SECRET": SECRET, "LOG_KEY": KEY.token})
    collector.start(timeout=40.0)
    return collector


def dyno(new_uwsgi: Callable[..., UwsgiProcess], collector: CollectorProcess, mode: str,
         name: str) -> UwsgiProcess:
    """A uWSGI dyno configured by `shipper uwsgi-config` to ship to `collector`."""
    done = shipper("uwsgi-config", "--collector", f"127.0.0.1:{collector.port(mode)}",
                   "--app", "shop", "--mode", mode, "--listen",
                   f"127.0.0.1:{free_udp_port()}")
    assert done.returncode == 0, done.stderr
    uwsgi = new_uwsgi(lines=done.stdout.splitlines(),
                      env=shipper_env(DYNO=name, LOG_SECRET=SECRET, LOG_KEY=KEY.token))
    uwsgi.start()
    return uwsgi


def requests(collector: CollectorProcess) -> list[dict[str, Any]]:
    """The request lines of app shop that the node shows."""
    out = collector.cli("tail", "--json", "-n", "1000", "--app", "shop")
    found = [json.loads(line) for line in out.stdout.splitlines() if line]
    return [r for r in found if str(r.get("path", "")).startswith("/via-")]


def both_requests(collector: CollectorProcess) -> list[dict[str, Any]]:
    """The node's two request lines, once it shows both."""

    def ready() -> list[dict[str, Any]] | None:
        found = requests(collector)
        return found if len(found) >= 2 else None
    return wait_for(ready, 20.0, f"both request lines on {collector.url}")


async def test_dynos_on_different_nodes_are_one_log(
        new_nats: Callable[..., NatsCluster], new_collector: Callable[..., CollectorProcess],
        new_uwsgi: Callable[..., UwsgiProcess]) -> None:
    """web.1 ships encrypted to A, web.2 through its native sidecar to B; each node shows
    both request lines, under the same ids, with their source and format."""
    nats = await asyncio.to_thread(new_nats, 3)
    a = await asyncio.to_thread(node, new_collector, nats, "a")
    b = await asyncio.to_thread(node, new_collector, nats, "b")
    one = await asyncio.to_thread(dyno, new_uwsgi, a, "crypto", "web.1")
    two = await asyncio.to_thread(dyno, new_uwsgi, b, "native", "web.2")
    assert await asyncio.to_thread(one.get, "/via-a") == 200
    assert await asyncio.to_thread(two.get, "/via-b") == 200
    on_a = await asyncio.to_thread(both_requests, a)
    on_b = await asyncio.to_thread(both_requests, b)
    assert {(r["path"], r["source"], r["format"]) for r in on_a} == {
        ("/via-a", "web.1", "crypto"), ("/via-b", "web.2", "native")}
    assert [(r["id"], r["path"]) for r in on_a] == [(r["id"], r["path"]) for r in on_b]
