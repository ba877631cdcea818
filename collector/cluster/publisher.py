"""The publisher: this node's records, batched, to JetStream, or to the spool."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Protocol

import structlog

from collector.cluster.batch import BatchId, encode
from collector.cluster.errors import ClusterError
from collector.cluster.spool import Spool
from collector.metrics import DELIVERY_BUCKETS, Histogram, histogram
from collector.record import Record

log = structlog.get_logger("collector.cluster")

MAX_BATCH_LINES = 2000
# Lines waiting for a publish slot while every slot waits for its ack (at most 2 s).
MAX_BUFFERED = 200_000
WINDOW = 64
ACK_TIMEOUT = 2.0


class Transport(Protocol):
    """What the publisher needs of NATS (collector.cluster.connection.Connection)."""

    async def publish(self, subject: str, body: bytes, msg_id: str, wait: float) -> int:
        """Publish; the stream sequence once a quorum acknowledged, or ClusterError."""
        ...


class Publisher:
    """Batches what `append` takes, publishes with at most `window` acks in flight, each
    wait bounded; what is not acknowledged goes to the spool, and while the spool holds
    anything new batches queue behind it (one node's lines keep their order)."""

    def __init__(self, transport: Transport, spool: Spool, node: str, subject: str, *,
                 window: int = WINDOW, ack_timeout: float = ACK_TIMEOUT) -> None:
        self._transport = transport
        self._spool = spool
        self._subject = subject
        self._node = node
        self._boot = secrets.token_hex(4)
        self._n = 0
        self._buffer: list[Record] = []
        self._wake = asyncio.Event()
        self._window = asyncio.Semaphore(window)
        self._ack_timeout = ack_timeout
        self._inflight: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.latency: Histogram = histogram(
            "collector_cluster_publish_seconds",
            "Time from publishing a batch to JetStream's acknowledgement", DELIVERY_BUCKETS)
        self.acked_lines = 0
        self.acked_batches = 0
        self.spool_full = 0
        self.buffer_full = 0
        self.publish_failures = 0
        self.lost_lines = 0
        self.last_ok = False

    @property
    def boot(self) -> str:
        """This process's boot id, the middle part of its batches' message ids."""
        return self._boot

    @property
    def inflight(self) -> int:
        """Batches published and not yet acknowledged."""
        return len(self._inflight)

    def append(self, records: Sequence[Record]) -> bool:
        """Take records for the next batch; False (lines refused, counted) when the spool
        is full or the buffer holds `MAX_BUFFERED` lines."""
        if self._spool.full:
            self.spool_full += len(records)
            return False
        if len(self._buffer) >= MAX_BUFFERED:
            self.buffer_full += len(records)
            return False
        self._buffer.extend(records)
        self._wake.set()
        return True

    def start(self) -> None:
        """Start the batching loop and the spool drainer."""
        self._tasks = [asyncio.create_task(self._run(), name="cluster-publisher"),
                       asyncio.create_task(self._drain(), name="cluster-drainer")]

    def _cut(self) -> tuple[BatchId, bytes, int]:
        records, self._buffer = (self._buffer[:MAX_BATCH_LINES],
                                 self._buffer[MAX_BATCH_LINES:])
        self._n += 1
        batch = BatchId(self._node, self._boot, self._n)
        return batch, encode(batch, records), len(records)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                batch, body, lines = self._cut()
                if self._spool.batches:
                    self._to_spool(batch.msg_id, body, lines)
                    continue
                await self._window.acquire()
                task = asyncio.create_task(self._send(batch.msg_id, body, lines))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _send(self, msg_id: str, body: bytes, lines: int) -> None:
        started = time.monotonic()
        try:
            await self._transport.publish(self._subject, body, msg_id, self._ack_timeout)
        except ClusterError as exc:
            self.publish_failures += 1
            self.last_ok = False
            self._to_spool(msg_id, body, lines)
            log.warning("batch_spooled", msg_id=msg_id, lines=lines, error=str(exc))
        else:
            self.latency.observe(time.monotonic() - started)
            self.acked_lines += lines
            self.acked_batches += 1
            self.last_ok = True
        finally:
            self._window.release()

    def _to_spool(self, msg_id: str, body: bytes, lines: int) -> None:
        """The one catch point for a spool that cannot be written (a full disk): the
        batch's lines are logged and counted as lost, the loop goes on."""
        try:
            self._spool.push(msg_id, body, lines)
        except ClusterError as exc:
            self.lost_lines += lines
            log.error("batch_lost", msg_id=msg_id, lines=lines, error=str(exc))

    async def _drain(self) -> None:
        while True:
            try:
                item = self._spool.first() if self._spool.batches else None
                if item is None:
                    await asyncio.sleep(0.2)
                    continue
                started = time.monotonic()
                await self._transport.publish(self._subject, item.body, item.msg_id,
                                              self._ack_timeout)
                self.latency.observe(time.monotonic() - started)
                self._spool.remove(item)
            except ClusterError as exc:
                # No quorum yet, or the spool file failing: the batch stays, try again.
                self.last_ok = False
                log.debug("spool_drain_waiting", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            self.acked_lines += item.lines
            self.acked_batches += 1
            self.last_ok = True

    async def stop(self, within: float = 5.0) -> None:
        """Stop; wait for acks in flight (bounded), spool whatever is still buffered."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=within)
        while self._buffer:
            batch, body, lines = self._cut()
            self._to_spool(batch.msg_id, body, lines)
