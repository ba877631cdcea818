"""The publisher: this node's records, batched, to JetStream in the order it accepted
them, or to the spool."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from collector.cluster.batch import BatchId, assemble, row
from collector.cluster.errors import ClusterError, OutOfSequence
from collector.cluster.spool import Spool
from collector.metrics import DELIVERY_BUCKETS, Histogram, histogram
from collector.record import Record

log = structlog.get_logger("collector.cluster")

MAX_BATCH_LINES = 2000
# Characters of rows per message, well below NATS's default 1 MB payload limit: a listener's
# wake-up can hand on hundreds of datagrams at once, split over several messages.
MAX_BATCH_CHARS = 256 * 1024
# Lines waiting while the batch in hand waits for its ack (at most ACK_TIMEOUT).
MAX_BUFFERED = 200_000
ACK_TIMEOUT = 2.0
# Between two tries while NATS does not acknowledge.
RETRY_PAUSE = 0.5
# While the spool holds anything, new lines are gathered this long into one spooled batch
# (one row, one message later) rather than one row per datagram.
SPILL_GATHER = 0.05

# Told once per group of records whether they are safe: True once JetStream acknowledged
# them or the spool holds them (the node's promise to publish them), False if lost.
Settle = Callable[[bool], None]


class Joint:
    """One settle for a group published in several parts: called once, after the last
    part, with True only if every part is safe."""

    __slots__ = ("_left", "_ok", "_settle")

    def __init__(self, settle: Settle, parts: int) -> None:
        self._settle = settle
        self._left = parts
        self._ok = True

    def part(self, ok: bool) -> None:
        """One part settled."""
        self._ok = self._ok and ok
        self._left -= 1
        if not self._left:
            self._settle(self._ok)


class Transport(Protocol):
    """What the publisher needs of NATS (collector.cluster.connection.Connection)."""

    @property
    def connected(self) -> bool:
        """Whether a server is connected now."""
        ...

    async def publish(self, subject: str, body: bytes, msg_id: str, wait: float,
                      expected_last: int | None = None) -> int:
        """Publish; the stream sequence once a quorum acknowledged, or ClusterError
        (OutOfSequence when `subject` does not end at `expected_last`)."""
        ...

    async def last_on_subject(self, subject: str, wait: float = 2.0) -> tuple[int, str]:
        """Sequence and message id of the subject's last message, or (0, "")."""
        ...

    async def msg_id_at(self, seq: int, wait: float = 2.0) -> str:
        """The message id stored at `seq` ("" if none)."""
        ...


@dataclass(slots=True)
class Batch:
    """One message to publish and who to tell when it is safe."""

    msg_id: str
    body: bytes
    lines: int
    settles: list[Settle] = field(default_factory=list)


class Publisher:
    """Publishes one batch at a time, each only after the one before it on the node's
    subject (`Nats-Expected-Last-Subject-Sequence`), so the stream holds one node's
    batches in the order it accepted them, across outages, reconnects and leader
    changes. What is not acknowledged goes to the spool; while the spool holds anything
    new batches queue behind it and are published from it, in order."""

    def __init__(self, transport: Transport, spool: Spool, node: str, subject: str, *,
                 ack_timeout: float = ACK_TIMEOUT, retry_pause: float = RETRY_PAUSE) -> None:
        self._transport = transport
        self._spool = spool
        self._subject = subject
        self._node = node
        self._boot = secrets.token_hex(4)
        self._n = 0
        # Rows encoded as taken: while a batch waits for its ack the next one gathers here,
        # and strings are not tracked by the garbage collector (Records were, and made its
        # full collections long enough for the kernel to drop datagrams meanwhile).
        self._groups: deque[tuple[list[str], int, Settle | None]] = deque()
        self._buffered = 0
        self._wake = asyncio.Event()
        self._spill = asyncio.Event()
        self._ack_timeout = ack_timeout
        self._retry_pause = retry_pause
        # The stream sequence of this node's last message; None until asked of NATS.
        self._last: int | None = None
        self._in_hand: Batch | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.latency: Histogram = histogram(
            "collector_cluster_publish_seconds",
            "Time from publishing a batch to JetStream's acknowledgement", DELIVERY_BUCKETS)
        self.acked_lines = 0
        self.acked_batches = 0
        self.spool_full = 0
        self.buffer_full = 0
        self.publish_failures = 0
        self.out_of_sequence = 0
        self.lost_lines = 0
        self.settle_errors = 0
        self.last_ok = False

    @property
    def boot(self) -> str:
        """This process's boot id, the middle part of its batches' message ids."""
        return self._boot

    @property
    def inflight(self) -> int:
        """Batches published and not yet acknowledged (0 or 1)."""
        return 0 if self._in_hand is None else 1

    @property
    def buffered(self) -> int:
        """Lines taken and not yet published or spooled."""
        return self._buffered

    def append(self, records: Sequence[Record], settle: Settle | None = None) -> bool:
        """Take records for the next batch; False (lines refused, counted, `settle` not
        called) when the spool is full or the buffer holds `MAX_BUFFERED` lines."""
        if self._spool.full:
            self.spool_full += len(records)
            return False
        if self._buffered >= MAX_BUFFERED:
            self.buffer_full += len(records)
            return False
        rows = [row(r) for r in records]
        chars = sum(map(len, rows))
        if len(rows) <= MAX_BATCH_LINES and chars <= MAX_BATCH_CHARS:
            self._groups.append((rows, chars, settle))
        else:
            self._split(rows, settle)
        self._buffered += len(records)
        self._wake.set()
        if self._spool.batches:
            # Only then: waking the spiller for every datagram would cost a task switch each.
            self._spill.set()
        return True

    def _split(self, rows: list[str], settle: Settle | None) -> None:
        """Queue a group too large for one message as several, in order; `settle` is
        called once, when every part is settled (True only if all are safe)."""
        parts: list[tuple[list[str], int]] = []
        part: list[str] = []
        chars = 0
        for text in rows:
            if part and (len(part) >= MAX_BATCH_LINES or chars + len(text) > MAX_BATCH_CHARS):
                parts.append((part, chars))
                part, chars = [], 0
            part.append(text)
            chars += len(text)
        parts.append((part, chars))
        joint = None if settle is None else Joint(settle, len(parts))
        for part, chars in parts:
            self._groups.append((part, chars, None if joint is None else joint.part))

    def start(self) -> None:
        """Start the publishing loop and the spiller."""
        self._tasks = [asyncio.create_task(self._run(), name="cluster-publisher"),
                       asyncio.create_task(self._spiller(), name="cluster-spiller")]

    def _cut(self) -> Batch:
        """The next batch: whole groups, up to MAX_BATCH_LINES lines (one group alone if
        it is larger), so each group is settled once."""
        groups, rows = self._groups, list[str]()
        settles: list[Settle] = []
        chars = 0
        while groups and (not rows or (len(rows) + len(groups[0][0]) <= MAX_BATCH_LINES
                                       and chars + groups[0][1] <= MAX_BATCH_CHARS)):
            group, size, settle = groups.popleft()
            rows.extend(group)
            chars += size
            if settle is not None:
                settles.append(settle)
        self._buffered -= len(rows)
        self._n += 1
        batch = BatchId(self._node, self._boot, self._n)
        return Batch(batch.msg_id, assemble(batch, rows), len(rows), settles)

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except ClusterError as exc:
                # The spool file failing to read or delete: the batch stays, try again.
                self.last_ok = False
                log.error("spool_failed", error=str(exc))
                await asyncio.sleep(1.0)

    async def _step(self) -> None:
        if self._spool.batches:
            item = self._spool.first()
            if item is None:
                return
            if await self._publish(item.msg_id, item.body):
                self._spool.remove(item)
                self._acked(item.lines)
            else:
                await asyncio.sleep(self._retry_pause)
        elif self._groups:
            # Kept in hand until answered: stopped meanwhile, `stop` spools it.
            batch = self._in_hand = self._cut()
            ok = await self._publish(batch.msg_id, batch.body)
            self._in_hand = None
            if ok:
                self._acked(batch.lines)
                self._settle(batch.settles, True)
            else:
                self._to_spool(batch)
                await asyncio.sleep(self._retry_pause)
        else:
            await self._wake.wait()
            self._wake.clear()

    async def _publish(self, msg_id: str, body: bytes) -> bool:
        """Publish one batch after this node's last; True once stored, here or before
        (a lost ack, nats-py re-sending after a reconnect, the spool of a previous run)."""
        if not self._transport.connected:
            self.last_ok = False
            return False
        started = time.monotonic()
        try:
            if self._last is None:
                self._last, last_id = await self._transport.last_on_subject(self._subject)
                if last_id == msg_id:
                    return self._stored(started)
            for _ in range(2):
                try:
                    self._last = await self._transport.publish(
                        self._subject, body, msg_id, self._ack_timeout, self._last)
                    return self._stored(started)
                except OutOfSequence as exc:
                    # This very batch was stored by an earlier try whose ack was lost, or
                    # something else was published on the subject: follow it, try again.
                    self.out_of_sequence += 1
                    # Unknown until the message there is read (asked afresh if that fails).
                    self._last = None
                    if exc.last < 0:
                        raise ClusterError(str(exc)) from None
                    landed = await self._transport.msg_id_at(exc.last)
                    self._last = exc.last
                    if landed == msg_id:
                        return self._stored(started)
                    log.warning("subject_moved", subject=self._subject, last=exc.last,
                                msg_id=msg_id, found=landed)
            return False
        except ClusterError as exc:
            self.publish_failures += 1
            self.last_ok = False
            log.info("publish_failed", msg_id=msg_id, error=str(exc))
            return False

    def _stored(self, started: float) -> bool:
        self.latency.observe(time.monotonic() - started)
        self.last_ok = True
        return True

    def _acked(self, lines: int) -> None:
        self.acked_lines += lines
        self.acked_batches += 1

    async def _spiller(self) -> None:
        """While the spool holds anything, new lines join it (in order, behind it)."""
        while True:
            await self._spill.wait()
            self._spill.clear()
            if not self._spool.batches:
                continue
            await asyncio.sleep(SPILL_GATHER)
            while self._groups and self._spool.batches:
                self._to_spool(self._cut())

    def _to_spool(self, batch: Batch) -> None:
        """The one catch point for a spool that cannot be written (a full disk): the
        batch's lines are logged and counted as lost, the loop goes on."""
        try:
            self._spool.push(batch.msg_id, batch.body, batch.lines)
        except ClusterError as exc:
            self.lost_lines += batch.lines
            log.error("batch_lost", msg_id=batch.msg_id, lines=batch.lines, error=str(exc))
            self._settle(batch.settles, False)
            return
        log.debug("batch_spooled", msg_id=batch.msg_id, lines=batch.lines)
        self._settle(batch.settles, True)
        self._spill.set()

    def _settle(self, settles: list[Settle], ok: bool) -> None:
        for settle in settles:
            try:
                settle(ok)
            except Exception:
                # A listener's counting bug must not stop publishing; logged and counted.
                self.settle_errors += 1
                log.exception("settle_failed")

    async def stop(self) -> None:
        """Stop; the batch in hand and whatever is buffered go to the spool, in order
        (a batch that did land is recognised as stored on the next start)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._in_hand is not None:
            self._to_spool(self._in_hand)
            self._in_hand = None
        while self._groups:
            self._to_spool(self._cut())
