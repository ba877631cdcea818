"""The materializer: the shared stream, in stream order, into the local store and to the
live fan-out, with ids every node computes alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import nats.errors
import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from collector.cluster.batch import decode
from collector.cluster.checkpoint import Checkpoint, Position
from collector.cluster.connection import Connection
from collector.cluster.errors import ClusterError
from collector.cluster.ids import assign
from collector.errors import CollectorError
from collector.record import Record
from collector.store.base import Store

log = structlog.get_logger("collector.cluster")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
CHECKPOINT_EVERY = 256
WATCHDOG_SECONDS = 2.0


class Consumer(Protocol):
    """The live fan-out (collector.fanout.Hub)."""

    def consume(self, records: Sequence[Record]) -> None:
        """Take records."""
        ...


def timestamp_us(msg: Msg) -> int:
    """The message's stream timestamp in whole microseconds (exact, no float)."""
    return (msg.metadata.timestamp - _EPOCH) // _MICROSECOND


Applied = Callable[[int, float, Sequence[Record]], None]
"""A listener of applied messages: (stream sequence, stream time in seconds, all the
message's records in order), called on the event loop once the message is applied."""


class Materializer:
    """Applies the stream from the last sequence this node applied."""

    def __init__(self, connection: Connection, store: Store, fanout: Consumer,
                 checkpoint: Checkpoint, store_last: int) -> None:
        self._connection = connection
        self._store = store
        self._fanout = fanout
        self._checkpoint = checkpoint
        self.position: Position = checkpoint.load()
        # Rows past the checkpoint were committed before a crash: replayed, they get the
        # same ids again, and ids up to the store's newest are skipped.
        self._store_last = store_last
        self._task: asyncio.Task[None] | None = None
        self._since_save = 0
        self.lag = 0
        self.duplicates = 0
        self.bad_batches = 0
        self.failures = 0
        self._listeners: list[Applied] = []

    def add_listener(self, listener: Applied) -> None:
        """Hand every applied message (not duplicates, not undecodable ones) to
        `listener`, in stream order (the cluster's alarms evaluate from here)."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Subscribe and apply in the background."""
        subscription = await self._connection.ordered(self.position.seq)
        self._task = asyncio.create_task(self._run(subscription), name="cluster-materializer")

    async def _run(self, subscription: Subscription) -> None:
        idle = 0.0
        while True:
            try:
                msg = await subscription.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                await self._save()
                idle += 0.5
                if idle >= WATCHDOG_SECONDS:
                    idle = 0.0
                    subscription = await self._watchdog(subscription)
                continue
            except nats.errors.Error as exc:
                log.warning("materializer_read_failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(0.5)
                continue
            idle = 0.0
            try:
                await self.apply(msg)
            except Exception:
                # The task's one catch point: logged once, counted; the next message goes on.
                self.failures += 1
                log.exception("materializer_failed", seq=msg.metadata.sequence.stream)
                await asyncio.sleep(0.5)

    async def _watchdog(self, subscription: Subscription) -> Subscription:
        """Idle while the stream holds more than was applied: nats-py's ordered consumer
        can give up resetting itself after an outage, so subscribe again from here."""
        try:
            last = await self._connection.last_seq()
            self.lag = max(0, last - self.position.seq)
            if last <= self.position.seq:
                return subscription
            fresh = await self._connection.ordered(self.position.seq)
        except ClusterError as exc:
            log.warning("materializer_stalled", seq=self.position.seq, error=str(exc))
            return subscription
        log.info("materializer_resubscribed", seq=self.position.seq, stream_last=last)
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()
        return fresh

    async def apply(self, msg: Msg) -> None:
        """Give the message's records their ids, store them and hand them on."""
        position = self.position
        meta = msg.metadata
        self.lag = meta.num_pending
        try:
            batch, records = decode(msg.data)
        except ClusterError as exc:
            self.bad_batches += 1
            log.error("batch_undecodable", seq=meta.sequence.stream, error=str(exc))
            position.seq = meta.sequence.stream
            return
        key = f"{batch.node}.{batch.boot}"
        if position.seen(key, batch.n):
            self.duplicates += 1
            log.info("batch_duplicate", seq=meta.sequence.stream, msg_id=batch.msg_id)
        else:
            first, position.last_id = assign(position.last_id, timestamp_us(msg),
                                             len(records))
            for offset, record in enumerate(records):
                record.id = first + offset
            position.mark(key, batch.n)
            fresh = [r for r in records if r.id > self._store_last]
            if fresh:
                while not self._store.append(fresh):  # noqa: ASYNC110 (a queue, not an event)
                    # The writer's queue is full: wait for it rather than lose lines.
                    await asyncio.sleep(0.05)
                self._fanout.consume(fresh)
            position.seq = meta.sequence.stream
            for listener in self._listeners:
                listener(position.seq, timestamp_us(msg) / 1e6, records)
        position.seq = meta.sequence.stream
        self._since_save += 1
        if self._since_save >= CHECKPOINT_EVERY:
            await self._save()

    async def _save(self) -> None:
        if not self._since_save:
            return
        try:
            await self._store.flush()
            self._checkpoint.save(self.position)
        except CollectorError as exc:
            # Kept for the next try; a crash before then replays from the older position.
            log.error("checkpoint_failed", seq=self.position.seq, error=str(exc))
            return
        self._since_save = 0

    async def stop(self) -> None:
        """Stop applying and save where it stands (after the store commits)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._save()
        self._checkpoint.close()
