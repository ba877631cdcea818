"""A node that joins after retention cut the stream's head gives the same ids as the node
that saw the whole stream (collector.cluster.anchor), on a real nats-server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import nats
import pytest

from collector.cluster.anchor import SHARE_EVERY
from collector.cluster.batch import BatchId, encode
from collector.cluster.stream import STREAM, subject
from collector.record import Record
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.net import wait_for

pytestmark = pytest.mark.e2e

NODE = """[cluster]
nats = {nats}
node = {node}
replicas = 1

[listener:plain]
udp = 127.0.0.1:{{port:plain}}
format = socket
app = web
"""
PER_MESSAGE = 20
MESSAGES = SHARE_EVERY + 100


def node(new_collector: Callable[..., CollectorProcess], nats_: NatsCluster,
         name: str) -> CollectorProcess:
    """A started collector node on the one-server cluster."""
    collector = new_collector(config=NODE.format(nats=",".join(nats_.urls), node=name))
    collector.start(timeout=40.0)
    return collector


async def publish_bursts(urls: list[str]) -> None:
    """`MESSAGES` batches of `PER_MESSAGE` records, published back to back: messages a few
    microseconds apart holding 20 records each, so ids run ahead of the stream's clock and
    each message's ids depend on the ones before it."""
    nc = await nats.connect(urls)
    js = nc.jetstream(publish_async_max_pending=512)
    boot = secrets.token_hex(4)
    for n in range(1, MESSAGES + 1):
        records = [Record(0, 0.0, "web", "ext.1", "h", "socket", f"m{n} r{i}")
                   for i in range(PER_MESSAGE)]
        await js.publish_async(subject("ext"), encode(BatchId("ext", boot, n), records),
                               headers={"Nats-Msg-Id": f"ext.{boot}.{n}"})
    await asyncio.wait_for(js.publish_async_completed(), 30)
    await nc.close()


async def purge_head(urls: list[str], before: int) -> int:
    """Cut the stream's messages before sequence `before` (as retention would); the
    stream's first sequence afterwards."""
    nc = await nats.connect(urls)
    js = nc.jetstream()
    await js.purge_stream(STREAM, seq=before)
    first = int((await js.stream_info(STREAM)).state.first_seq)
    await nc.close()
    return first


def page(collector: CollectorProcess, after: int) -> list[dict[str, Any]]:
    """Up to 10,000 lines after the id `after`."""
    got = collector.get(f"/v1/logs?after={after}&limit=10000")
    records: list[dict[str, Any]] = got["records"] if isinstance(got, dict) else got
    return records


async def test_a_late_joiner_gives_the_same_ids_as_the_others(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A applies the whole stream and shares a checkpoint; the stream's head is cut; B,
    started afterwards on an empty data dir, gives every line it can still read the id A
    gave it, so a cursor moves between them."""
    nats_ = await asyncio.to_thread(new_nats, 1)
    a = await asyncio.to_thread(node, new_collector, nats_, "a")
    await publish_bursts(nats_.urls)
    await asyncio.to_thread(
        wait_for, lambda: a.metrics().get("collector_cluster_applied_sequence", 0)
        >= MESSAGES, 60.0, "A to apply the stream")
    await asyncio.sleep(1.5)  # A's idle save shares the checkpoint at SHARE_EVERY
    first = await purge_head(nats_.urls, SHARE_EVERY + 1)
    assert first == SHARE_EVERY + 1
    b = await asyncio.to_thread(node, new_collector, nats_, "b")
    expected = (MESSAGES - SHARE_EVERY) * PER_MESSAGE
    await asyncio.to_thread(wait_for, lambda: len(page(b, 0)) >= expected, 30.0,
                            "B to apply what is left of the stream")
    on_b = page(b, 0)
    on_a = page(a, on_b[0]["id"] - 1)
    assert len(on_b) == expected
    assert [(r["id"], r["line"]) for r in on_b] == [(r["id"], r["line"]) for r in on_a]
    # The bursts did push ids past the stream's clock: without the checkpoint, B's ids
    # would have started at its first message's timestamp.
    assert on_b[0]["line"] == f"m{SHARE_EVERY + 1} r0"
