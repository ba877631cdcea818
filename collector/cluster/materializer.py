"""The materializer: the shared stream, in stream order, into the local store and to the
live fan-out, with ids every node computes alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from collector.cluster.anchor import Anchors
from collector.cluster.batch import decode
from collector.cluster.checkpoint import Checkpoint, Position
from collector.cluster.connection import Connection
from collector.cluster.errors import ClusterError
from collector.cluster.ids import assign
from collector.cluster.reader import Reader, StreamMessage
from collector.errors import CollectorError
from collector.record import Record
from collector.store.base import Store

log = structlog.get_logger("collector.cluster")

CHECKPOINT_EVERY = 256
WATCHDOG_SECONDS = 2.0


class Consumer(Protocol):
    """The live fan-out (collector.fanout.Hub)."""

    def consume(self, records: Sequence[Record]) -> None:
        """Take records."""
        ...


Applied = Callable[[int, float, Sequence[Record]], None]
"""A listener of applied messages: (stream sequence, stream time in seconds, all the
message's records in order), called on the event loop once the message is applied."""


class Materializer:
    """Applies the stream from the last sequence this node applied."""

    def __init__(self, connection: Connection, store: Store, fanout: Consumer,
                 checkpoint: Checkpoint, store_last: int, *,
                 anchors: Anchors | None = None) -> None:
        self._connection = connection
        self._store = store
        self._fanout = fanout
        self._checkpoint = checkpoint
        self.position: Position = checkpoint.load()
        # Rows past the checkpoint were committed before a crash: replayed, they get the
        # same ids again, and ids up to the store's newest are skipped.
        self._store_last = store_last
        self._anchors = anchors
        self._task: asyncio.Task[None] | None = None
        self._since_save = 0
        self._share_failed = False
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
        """Subscribe and apply in the background (from a shared checkpoint when the
        messages after this node's own position were cut by retention)."""
        try:
            self._same_stream(*await self._connection.identity())
        except ClusterError as exc:
            # The watchdog asks again once the reader idles.
            log.warning("stream_identity_unavailable", seq=self.position.seq, error=str(exc))
        if self._anchors is not None:
            await self._join(self._anchors)
        reader = await self._connection.ordered(self.position.seq)
        self._task = asyncio.create_task(self._run(reader), name="cluster-materializer")

    async def _run(self, reader: Reader) -> None:
        idle = 0.0
        while True:
            try:
                msg = await reader.next(wait=0.5)
            except ClusterError as exc:
                log.warning("materializer_read_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if msg is None:
                await self._save()
                idle += 0.5
                if idle >= WATCHDOG_SECONDS:
                    idle = 0.0
                    reader = await self._watchdog(reader)
                continue
            idle = 0.0
            try:
                await self.apply(msg)
            except Exception:
                # The task's one catch point: logged once, counted; the next message goes on.
                self.failures += 1
                log.exception("materializer_failed", seq=msg.seq)
                await asyncio.sleep(0.5)

    async def _join(self, anchors: Anchors) -> None:
        try:
            first = await self._connection.first_seq()
            if self.position.seq >= first - 1:
                return
            found = await anchors.start_for(first)
        except (ClusterError, ValueError) as exc:
            log.warning("ids_checkpoint_unavailable", seq=self.position.seq, error=str(exc))
            return
        if found is None:
            # Ids computed from here may differ from the other nodes' until a quiet moment
            # lets the stream's clock catch up with them.
            log.warning("ids_checkpoint_missing", seq=self.position.seq, stream_first=first)
            return
        log.info("ids_checkpoint_adopted", seq=self.position.seq, adopted=found.seq,
                 stream_first=first, skipped=max(0, found.seq - max(self.position.seq,
                                                                  first - 1)))
        found.applied = {**self.position.applied, **found.applied}
        found.stream = self.position.stream
        self.position = found

    async def _watchdog(self, reader: Reader) -> Reader:
        """Idle while the stream holds more than was applied: nats-py's ordered consumer
        can give up resetting itself after an outage, so subscribe again from here."""
        try:
            created, last = await self._connection.identity()
            reset = not self._same_stream(created, last)
            self.lag = max(0, last - self.position.seq)
            if not reset and last == self.position.seq:
                return reader
            fresh = await self._connection.ordered(self.position.seq)
        except ClusterError as exc:
            log.warning("materializer_stalled", seq=self.position.seq, error=str(exc))
            return reader
        log.info("materializer_resubscribed", seq=self.position.seq, stream_last=last)
        await reader.close()
        return fresh

    def _same_stream(self, created: str, last: int) -> bool:
        """Whether the position counts in the LOGS that now exists (created at `created`,
        ending at `last`); if not, LOGS was deleted and made again (an operator's reset)
        and the new stream is applied from its start, ids rising on from the last one
        given. Its sequences restart from 1, so one that has already grown past the
        position is told apart only by its creation time; a position from before that
        was kept, or a server that gives none, falls back on the sequence alone."""
        position = self.position
        moved = bool(created and position.stream and created != position.stream)
        if moved or last < position.seq:
            log.error("stream_reset", applied=position.seq, stream_last=last,
                      created=created, was_created=position.stream)
            position.seq = 0
            position.stream = created
            self._since_save += 1
            return False
        if created and created != position.stream:
            # Saved with the next checkpoint; counting it as a change would shift every
            # later save, and the ids checkpoints shared with them, by one message.
            position.stream = created
        return True

    async def apply(self, msg: StreamMessage) -> None:
        """Give the message's records their ids, store them and hand them on."""
        position = self.position
        self.lag = msg.pending
        try:
            batch, records = decode(msg.data)
        except ClusterError as exc:
            self.bad_batches += 1
            log.error("batch_undecodable", seq=msg.seq, error=str(exc))
            position.seq = msg.seq
            return
        key = f"{batch.node}.{batch.boot}"
        if position.seen(key, batch.n):
            self.duplicates += 1
            log.info("batch_duplicate", seq=msg.seq, msg_id=batch.msg_id)
        else:
            first, position.last_id = assign(position.last_id, msg.timestamp_us,
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
            position.seq = msg.seq
            for listener in self._listeners:
                listener(position.seq, msg.timestamp_us / 1e6, records)
        position.seq = msg.seq
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
        if self._anchors is not None:
            try:
                await self._anchors.share(self.position)
            except ClusterError as exc:
                if not self._share_failed:
                    log.warning("ids_checkpoint_share_failed", seq=self.position.seq,
                                error=str(exc))
                self._share_failed = True
            else:
                self._share_failed = False

    async def stop(self) -> None:
        """Stop applying and save where it stands (after the store commits)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._save()
        self._checkpoint.close()
