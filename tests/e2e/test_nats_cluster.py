"""What the cluster design (issue 9) takes from JetStream, checked on three real
`nats-server` processes on loopback: quorum-acknowledged publishes to an R3 stream,
de-duplication by `Nats-Msg-Id`, no acknowledged message lost when a server (the stream
leader) is killed, and the killed server catching up after its restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType, StreamConfig, StreamInfo

from tests.support.nats import NatsCluster

pytestmark = [
    pytest.mark.e2e,
    # nats-py drops a half-open StreamWriter when a reconnect meets a server that is being
    # killed ("empty response ... INFO"); its __del__ warning, raised here as an error,
    # failed this test now and then though every assertion held.
    pytest.mark.filterwarnings("ignore:unclosed <StreamWriter:ResourceWarning"),
]

STREAM = "LOGS"
SUBJECT = "logs.in"


@pytest.fixture
async def cluster(new_nats: Callable[..., NatsCluster]) -> NatsCluster:
    """Three clustered JetStream servers."""
    return await asyncio.to_thread(new_nats, 3)


@pytest.fixture
async def client(cluster: NatsCluster) -> AsyncIterator[Client]:
    """A client that knows every server and reconnects quickly and without end."""
    nc = await nats.connect(cluster.urls, connect_timeout=2, reconnect_time_wait=0.2,
                            max_reconnect_attempts=-1, allow_reconnect=True)
    yield nc
    await nc.close()


async def publish(js: JetStreamContext, msg_id: str, within: float = 20.0) -> PubAck:
    """Publish until JetStream acknowledges, re-sending with the same message id (so a
    retry after a lost ack stores nothing twice); fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await js.publish(SUBJECT, msg_id.encode(), timeout=1.0,
                                    headers={"Nats-Msg-Id": msg_id})
        except nats.errors.Error:
            # A leader election or a reconnect in progress: no ack is no promise, retry.
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def replicated(js: JetStreamContext, within: float = 20.0) -> StreamInfo:
    """The stream's info once it has a leader and both replicas are current: a replica
    acks a publish before it has applied it, so right after a burst one may still be
    catching up (it was, now and then, on two busy cores); fails after `within` s."""
    deadline = time.monotonic() + within
    while True:
        info = await js.stream_info(STREAM)
        replicas = (info.cluster.replicas or []) if info.cluster else []
        if info.cluster and info.cluster.leader and len(replicas) == 2 \
                and all(replica.current for replica in replicas):
            return info
        assert time.monotonic() < deadline, f"replicas not current: {info.cluster}"
        await asyncio.sleep(0.1)


async def stored_ids(js: JetStreamContext) -> dict[int, str]:
    """Every message in the stream, read back one sequence at a time: {seq: payload}."""
    info = await js.stream_info(STREAM)
    assert info.state.first_seq == 1
    found: dict[int, str] = {}
    for seq in range(1, info.state.last_seq + 1):
        msg = await js.get_msg(STREAM, seq)
        assert msg.data is not None
        found[seq] = msg.data.decode()
    return found


async def test_r3_stream_survives_a_killed_leader_and_the_node_catches_up(
        cluster: NatsCluster, client: Client) -> None:
    """An R3 stream acks publishes, stores a repeated Nats-Msg-Id once, keeps every acked
    message and goes on taking publishes when its leader is SIGKILLed, and the restarted
    server holds every message again; with two of three servers gone nothing is acked."""
    js = client.jetstream(timeout=5)
    await js.add_stream(StreamConfig(name=STREAM, subjects=["logs.>"], num_replicas=3,
                                     storage=StorageType.FILE, duplicate_window=120.0))
    acked: dict[int, str] = {}
    for i in range(30):
        ack = await publish(js, f"m-{i}")
        assert ack.stream == STREAM
        assert not ack.duplicate
        acked[ack.seq] = f"m-{i}"
    assert sorted(acked) == list(range(1, 31))
    info = await replicated(js)
    assert info.cluster is not None
    assert info.cluster.leader is not None

    again = await publish(js, "m-7")
    assert again.duplicate, again
    assert again.seq == 8, again
    assert (await js.stream_info(STREAM)).state.messages == 30

    killed = cluster.index(info.cluster.leader)
    await asyncio.to_thread(cluster.kill, killed)
    for i in range(30, 60):
        ack = await publish(js, f"m-{i}")
        assert not ack.duplicate
        acked[ack.seq] = f"m-{i}"
    after = await js.stream_info(STREAM)
    assert after.cluster is not None
    assert after.cluster.leader not in (None, cluster.nodes[killed].name), after.cluster
    assert await stored_ids(js) == acked, cluster.output()

    await asyncio.to_thread(cluster.restart, killed)
    node = cluster.nodes[killed]

    def caught_up() -> bool:
        detail = node.jsz_stream(STREAM)
        return detail is not None and detail["state"]["messages"] == 60 \
            and detail["state"]["last_seq"] == 60

    deadline = time.monotonic() + 20
    while not await asyncio.to_thread(caught_up):
        assert time.monotonic() < deadline, f"{node.name} did not catch up:\n" \
            f"{node.jsz_stream(STREAM)}"
        await asyncio.sleep(0.2)

    # Quorum is two of three: with two servers down a publish must go unacknowledged.
    survivors = [i for i in range(3) if i != killed]
    await asyncio.to_thread(cluster.kill, survivors[0])
    await asyncio.to_thread(cluster.kill, killed)
    with pytest.raises(nats.errors.Error):
        await js.publish(SUBJECT, b"no quorum", timeout=2.0,
                         headers={"Nats-Msg-Id": "no-quorum"})
