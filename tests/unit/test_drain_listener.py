"""The drain listener in process, over loopback HTTP: no 2xx for lines not taken (a full
store queue, a cluster batch not settled), and the connection bound."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Sequence
from typing import cast

import aiohttp

from collector.config.drain import DrainConfig, DrainCredential
from collector.errors import Location
from collector.ingest import Ids, Ingest
from collector.listen.drain import DrainListener
from collector.record import Record
from collector.store.base import Store
from tests.support.net import free_port
from tests.support.settling import Settling

TOKEN = "0123456789abcdef0123"
FRAME = b"<190>1 2012-11-30T06:47:00+00:00 host app web.1 - a line from the dyno\n"
BODY = str(len(FRAME)).encode() + b" " + FRAME
HEADERS = {"Authorization": "Basic " + base64.b64encode(f"shop:{TOKEN}".encode()).decode(),
           "Logplex-Msg-Count": "1", "Logplex-Frame-Id": "frame-1",
           "Content-Type": "application/logplex-1"}


class QueueStore:
    """Stands for the store's bounded queue: refuses records while `full`."""

    def __init__(self) -> None:
        self.full = False
        self.records: list[Record] = []

    def append(self, records: Sequence[Record]) -> bool:
        """Take records unless full."""
        if self.full:
            return False
        self.records.extend(records)
        return True


def drain_config(max_connections: int = 256) -> DrainConfig:
    """A plain-HTTP loopback drain for app `shop`."""
    here = Location("t.ini", 1)
    return DrainConfig("heroku", "127.0.0.1", free_port(),
                       (DrainCredential("shop", TOKEN, here),), location=here,
                       max_connections=max_connections)


async def eventually(check: Callable[[], object], within: float = 10.0) -> None:
    """Poll `check` on the event loop until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def post(config: DrainConfig) -> int:
    """POST BODY with frame id `frame-1`; the status."""
    async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{config.port}/drain", data=BODY, headers=HEADERS) as response:
        return response.status


async def test_full_store_queue_is_503_and_the_retry_is_taken() -> None:
    """While the store's queue is full the POST is 503 (Logplex retries) and its frame id
    is not remembered, so the retry with the same frame id is stored."""
    store = QueueStore()
    config = drain_config()
    listener = DrainListener(config, Ingest(Ids(), cast(Store, store)))
    await listener.start()
    try:
        store.full = True
        assert await post(config) == 503
        assert store.records == []
        store.full = False
        assert await post(config) == 204
        assert [r.line for r in store.records] == ["a line from the dyno"]
        assert await post(config) == 204  # the same frame id again: not stored twice
        assert len(store.records) == 1
        assert listener.stats.requests == {"store_backlog": 1, "ok": 1, "duplicate": 1}
    finally:
        await listener.close()


async def test_cluster_node_answers_once_settled() -> None:
    """On a cluster node the POST is answered after its batch settles: 503 when lost,
    204 when safe."""
    store = Settling()
    config = drain_config()
    listener = DrainListener(config, Ingest(Ids(), cast(Store, store)))
    await listener.start()
    try:
        answer = asyncio.ensure_future(post(config))
        await eventually(lambda: store.pending)
        assert not answer.done()
        store.pending.pop()(False)
        assert await answer == 503
        answer = asyncio.ensure_future(post(config))
        await eventually(lambda: store.pending)
        store.pending.pop()(True)
        assert await answer == 204
    finally:
        await listener.close()


async def test_connections_past_the_bound_are_closed() -> None:
    """With max-connections = 1, a second connection is closed at once and counted; the
    first still gets its answer."""
    store = QueueStore()
    config = drain_config(max_connections=1)
    listener = DrainListener(config, Ingest(Ids(), cast(Store, store)))
    await listener.start()
    try:
        _, first = await asyncio.open_connection("127.0.0.1", config.port)
        await eventually(lambda: listener.stats.connections == 1)
        reader, second = await asyncio.open_connection("127.0.0.1", config.port)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert listener.stats.connections_refused == 1
        first.close()
        second.close()
        await eventually(lambda: listener.stats.connections == 0)
        assert await post(config) == 204
    finally:
        await listener.close()


async def test_resend_while_the_first_is_settling_is_stored_once() -> None:
    """Logplex re-sends a POST it gave up waiting for: arriving while the first is being
    settled, it gets the first one's answer and its lines are not stored twice."""
    store = Settling()
    config = drain_config()
    listener = DrainListener(config, Ingest(Ids(), cast(Store, store)))
    await listener.start()
    try:
        first = asyncio.ensure_future(post(config))
        await eventually(lambda: store.pending)
        again = asyncio.ensure_future(post(config))
        await eventually(lambda: listener.stats.connections == 2)
        await asyncio.sleep(0.1)  # let the re-send reach its wait on the first
        store.pending.pop()(True)
        assert (await first, await again) == (204, 204)
        assert len(store.records) == 1
        assert store.pending == []
        assert listener.stats.requests == {"ok": 1, "duplicate": 1}
    finally:
        await listener.close()
