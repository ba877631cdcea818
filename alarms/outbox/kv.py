"""The replicated outbox: one key per notification in the NATS KV bucket `alarms-outbox`.

Writes go to the bucket and return once JetStream acknowledged them (on a quorum of the
bucket's replicas): `add` creates each key only if it is absent, so a notification raised
twice with the same id (a leader that died between writing and acking its message, then
the line replayed) stays one alarm; every later step is a compare-and-set on the revision
this outbox last wrote or handed out for the key. A compare-and-set that finds another
node's write re-reads the key and lets alarms.outbox.conflict decide which stands (logged
as `alarm_outbox_conflict`); when theirs stands, the caller's entry is updated in place to
what is stored, so a dispatcher holding it stops scheduling an entry another node
delivered or gave up on.

Reads (`recent`, the pending list of `open`, the candidates of `trim_dead` and `prune`)
come from an in-memory mirror of the bucket, kept by one watch task (restarted with
backoff when NATS stops answering it), so `GET /v1/alarms` on any node answers without
asking NATS. The mirror holds what the bucket holds, which `prune` (retention, for
delivered entries) and `trim_dead` (the dead-letter count and age) bound, with the
dispatcher's `bounds.pending` on what waits. A value this version cannot read is logged
(`alarm_outbox_unreadable`) and left out of the mirror, never overwritten.

The watch also tells the delivering node about entries that became pending through a
write of another node (an operator's `collector alarms retry` there, a notification a
former leader added): `on_requeued`'s callback gets them. Each value names its writer (a
random id per instance), which the watch compares with its own: a revision number alone
cannot tell, because the watch can deliver a write of this instance before the write call
has returned its revision.

Deletes (`prune`, `trim_dead`) are KV deletes at the revision read, so an entry another
node changed meanwhile (requeued) is not deleted; with the bucket's history of 1 the
marker replaces the value, one small marker per deleted key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import structlog

from alarms.notification import Notification
from alarms.outbox.base import Entry, State
from alarms.outbox.conflict import merged, resolve
from alarms.outbox.kvformat import Stored, decode, encode, key_for
from alarms.restore import latest_per_alert
from collector.cluster.errors import ClusterError
from collector.cluster.kv import Bucket, Item, follow
from collector.errors import StoreError

log = structlog.get_logger("alarms.outbox")

T = TypeVar("T")

BUCKET = "alarms-outbox"
# Writes to the bucket in flight at once, per call.
CONCURRENCY = 32
# Compare-and-set rounds for one key before giving up (each conflict is another node's
# write; more than a few in a row means something is wrong).
CAS_TRIES = 8


@dataclass
class _Slot:
    """The mirror's copy of one key: the entry, its revision, creation time and writer."""

    entry: Entry
    revision: int
    created_at: float
    writer: str


def _copy(entry: Entry) -> Entry:
    return dataclasses.replace(entry)


def _adopt(entry: Entry, stored: Entry) -> None:
    """Make the caller's entry what is stored (another node's write stood)."""
    entry.state, entry.attempts, entry.next_attempt = (stored.state, stored.attempts,
                                                       stored.next_attempt)
    entry.last_error, entry.outcome = stored.last_error, stored.outcome
    entry.delivered_at, entry.updated_at = stored.delivered_at, stored.updated_at


class KvOutbox:
    """The outbox in a NATS KV bucket (see the module docstring).

    `bucket` opens the bucket (e.g. `lambda: connection.bucket("alarms-outbox")`); it is
    called in `open`.
    """

    def __init__(self, bucket: Callable[[], Awaitable[Bucket]], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._open_bucket = bucket
        self._clock = clock
        self._bucket: Bucket | None = None
        self.writer = secrets.token_hex(8)
        self._mirror: dict[str, _Slot] = {}
        # Per key, the revision this instance last wrote or handed to its caller: the base
        # of the next compare-and-set (not what the watch last saw, which may be another
        # node's write that the caller has not seen).
        self._bases: dict[str, int] = {}
        # Keys this instance deleted, at the revision deleted, until the watch shows the
        # deletion (so that the watch's older news does not bring them back meanwhile).
        self._deleted: dict[str, int] = {}
        self._watch: asyncio.Task[None] | None = None
        self._callback: Callable[[list[Entry]], None] | None = None
        self._requeued: list[Entry] = []
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self.figures: Counter[str] = Counter()  # conflicts, unreadable, watch_restarts

    def on_requeued(self, callback: Callable[[list[Entry]], None]) -> None:
        """Call `callback` (on the event loop) with entries that became pending through
        another node's write; their revisions become the base of this instance's next
        writes of them."""
        self._callback = callback

    def __len__(self) -> int:
        """Entries in the mirror (what the bucket holds, as far as this node has seen)."""
        return len(self._mirror)

    # -- lifecycle -------------------------------------------------------------------

    def _require(self) -> Bucket:
        if self._bucket is None:
            raise StoreError("the alarm outbox is not open")
        return self._bucket

    async def open(self) -> list[Entry]:
        """Read the whole bucket into the mirror, start the watch; the pending entries,
        oldest first. Opening again (a node taking over delivery once more) starts
        afresh."""
        await self.close()
        self._mirror.clear()
        self._bases.clear()
        self._deleted.clear()
        try:
            bucket = await self._open_bucket()
            items = await bucket.items()
        except ClusterError as exc:
            raise StoreError(f"cannot open the alarm outbox: {exc}") from exc
        self._bucket = bucket
        for item in items:
            self._apply(item, notify=False)
        self._watch = asyncio.create_task(self._follow(bucket), name="alarm-outbox-watch")
        return self.pending()

    def pending(self) -> list[Entry]:
        """The pending entries now, oldest first (what a node taking over delivery
        schedules); their revisions become the base of this instance's next writes."""
        slots = sorted(((key, slot) for key, slot in self._mirror.items()
                        if slot.entry.state == "pending"),
                       key=lambda pair: (pair[1].created_at, pair[1].entry.id))
        for key, slot in slots:
            self._bases[key] = slot.revision
        return [_copy(slot.entry) for _, slot in slots]

    async def close(self) -> None:
        """Stop the watch (every write has returned by the time its call did)."""
        watch, self._watch = self._watch, None
        while watch is not None and not watch.done():
            # Again until it ends: nats-py waits for watch updates with asyncio.wait_for,
            # which in Python 3.11 swallows a cancellation that arrives as an update does.
            watch.cancel()
            await asyncio.wait({watch}, timeout=0.1)
        if watch is not None and not watch.cancelled() and watch.exception() is not None:
            log.error("alarm_outbox_watch_ended", error=str(watch.exception()))
        self._bucket = None

    # -- the mirror ------------------------------------------------------------------

    async def _follow(self, bucket: Bucket) -> None:
        """The watch task: every change to the bucket into the mirror."""
        def restarted() -> None:
            self.figures["watch_restarts"] += 1

        await follow(bucket, partial(self._apply, notify=True), "alarm_outbox", restarted)

    def _apply(self, item: Item, *, notify: bool) -> None:
        """One key's value at one revision into the mirror, unless the mirror already has
        that or a later one."""
        key = item.key
        slot = self._mirror.get(key)
        if item.deleted:
            gone = self._deleted.get(key)
            if gone is not None and item.revision > gone:
                del self._deleted[key]
            if slot is not None and slot.revision < item.revision:
                del self._mirror[key]
                self._bases.pop(key, None)
            return
        if slot is not None and slot.revision >= item.revision:
            return
        if self._deleted.get(key, -1) >= item.revision:
            return
        try:
            stored = decode(item.value)
        except StoreError as exc:
            self._mirror.pop(key, None)
            self.figures["unreadable"] += 1
            log.error("alarm_outbox_unreadable", key=key, revision=item.revision,
                      error=str(exc), note="left as it is; this node neither shows nor "
                                           "delivers it")
            return
        self._mirror[key] = _Slot(stored.entry, item.revision, stored.created_at,
                                  stored.writer)
        if (notify and stored.entry.state == "pending" and stored.writer != self.writer
                and (slot is None or slot.entry.state != "pending")
                and self._callback is not None):
            self._bases[key] = item.revision
            if not self._requeued:
                # One call for what arrives together (a requeue of many dead letters).
                asyncio.get_running_loop().call_soon(self._hand_requeued)
            self._requeued.append(_copy(stored.entry))

    def _hand_requeued(self) -> None:
        entries, self._requeued = self._requeued, []
        if not entries or self._callback is None:
            return
        try:
            self._callback(entries)
        except Exception:
            # The callback's one catch point: the watch goes on.
            self.figures["callback_errors"] += 1
            log.exception("alarm_outbox_requeued_callback_failed", count=len(entries))

    def _wrote(self, key: str, entry: Entry, revision: int, created_at: float) -> None:
        """Record a write of this instance (before the watch shows it)."""
        self._bases[key] = revision
        self._deleted.pop(key, None)
        slot = self._mirror.get(key)
        if slot is None or slot.revision < revision:
            self._mirror[key] = _Slot(_copy(entry), revision, created_at, self.writer)

    # -- writes ----------------------------------------------------------------------

    async def _each(self, work: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        """Run the calls concurrently (at most CONCURRENCY at once), all to the end; the
        first StoreError after all have finished."""
        async def gated(call: Coroutine[Any, Any, T]) -> T:
            async with self._gate:
                try:
                    return await call
                except ClusterError as exc:
                    raise StoreError(f"alarm outbox: {exc}") from exc

        results = await asyncio.gather(*(gated(call) for call in work),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    async def add(self, notifications: Sequence[Notification], now: float,
                  dues: Sequence[float] | None = None) -> set[str]:
        """Create each notification's key as pending, due now (or at its time in `dues`),
        unless it exists (then it is kept as it stands, and its id returned); returns once
        JetStream acknowledged every create."""
        bucket = self._require()
        times = [now] * len(notifications) if dues is None else dues
        if len(times) != len(notifications):
            raise ValueError("one due time per notification")
        unique: dict[str, tuple[Notification, float]] = {}
        known: set[str] = set()
        for notification, due in zip(notifications, times, strict=True):
            key = key_for(notification.id)
            if key in unique:
                known.add(notification.id)
            else:
                unique[key] = (notification, due)

        async def create(key: str, notification: Notification, due: float) -> None:
            entry = Entry(notification, next_attempt=due, updated_at=now)
            created_at = notification.created_at or now
            value = encode(entry, created_at, self.writer)
            for _ in range(CAS_TRIES):
                revision = await bucket.create(key, value)
                if revision is not None:
                    self._wrote(key, entry, revision, created_at)
                    return
                item = await bucket.get(key)
                if item is not None:
                    # Raised before (same id): kept as it stands.
                    self._bases[key] = item.revision
                    self._apply(item, notify=False)
                    known.add(notification.id)
                    return
            raise StoreError(f"alarm outbox: {key} kept changing while being created")

        await self._each(create(key, n, due) for key, (n, due) in unique.items())
        return known

    async def save(self, entry: Entry) -> None:
        """Compare-and-set the entry's state on the revision this outbox last wrote or
        handed out; on another node's write, the conflict rules decide (module
        docstring)."""
        await self._each([self._save(entry)])

    async def save_many(self, entries: Sequence[Entry]) -> None:
        """`save` for each entry, concurrently (each key is its own compare-and-set)."""
        await self._each(self._save(entry) for entry in entries)

    async def _save(self, entry: Entry) -> None:
        bucket = self._require()
        key = key_for(entry.id)
        slot = self._mirror.get(key)
        base = self._bases.get(key) or (slot.revision if slot is not None else None)
        created_at = (slot.created_at if slot is not None
                      else entry.notification.created_at or entry.updated_at)
        if base is None:
            item = await bucket.get(key)
            if item is None:
                # Not in the bucket (pruned, or never added): nothing to update, as an
                # UPDATE of a missing row.
                log.warning("alarm_outbox_missing", id=entry.id, state=entry.state)
                return
            base, created_at = item.revision, decode(item.value).created_at
        for _ in range(CAS_TRIES):
            revision = await bucket.update(key, encode(entry, created_at, self.writer), base)
            if revision is not None:
                self._wrote(key, entry, revision, created_at)
                return
            item = await bucket.get(key)
            theirs: Stored | None = decode(item.value) if item is not None else None
            winner = resolve(entry, theirs.entry if theirs is not None else None)
            self.figures["conflicts"] += 1
            log.warning("alarm_outbox_conflict", id=entry.id, ours=entry.state,
                        theirs=theirs.entry.state if theirs is not None else "deleted",
                        kept=winner)
            if item is None or theirs is None:
                # Deleted by another node (delivered and pruned, or a trimmed dead
                # letter): not brought back, and no longer to be sent from here.
                self._bases.pop(key, None)
                if entry.state == "pending":
                    entry.state = "dead"
                    entry.last_error = "removed from the outbox by another node"
                return
            self._apply(item, notify=False)
            if winner == "theirs":
                self._bases[key] = item.revision
                _adopt(entry, theirs.entry)
                return
            merged(entry, theirs.entry)
            base = item.revision
        raise StoreError(f"alarm outbox: {entry.id} kept changing while being saved")

    async def requeue(self, ids: Sequence[str] | None, now: float) -> list[Entry]:
        """Dead entries (those named, or all) made pending with attempts reset, each a
        compare-and-set on the revision the mirror holds; the entries moved."""
        if ids is not None and not ids:
            return []
        bucket = self._require()
        wanted = None if ids is None else {key_for(i) for i in ids}
        dead = [(key, slot) for key, slot in self._mirror.items()
                if slot.entry.state == "dead" and (wanted is None or key in wanted)]

        async def move(key: str, slot: _Slot) -> Entry | None:
            base, current, created_at = slot.revision, slot.entry, slot.created_at
            for _ in range(CAS_TRIES):
                entry = dataclasses.replace(current, state="pending", attempts=0,
                                            next_attempt=now, updated_at=now)
                revision = await bucket.update(key, encode(entry, created_at, self.writer),
                                               base)
                if revision is not None:
                    self._wrote(key, entry, revision, created_at)
                    return _copy(entry)
                item = await bucket.get(key)
                if item is None:
                    return None
                stored = decode(item.value)
                if stored.entry.state != "dead":
                    return None  # requeued or changed by another node meanwhile
                base, current, created_at = item.revision, stored.entry, stored.created_at
            raise StoreError(f"alarm outbox: {key} kept changing while being requeued")

        moved = [(slot.created_at, entry) for (key, slot), entry in
                 zip(dead, await self._each(move(key, slot) for key, slot in dead),
                     strict=True) if entry is not None]
        return [entry for _, entry in sorted(moved, key=lambda p: (p[0], p[1].id))]

    async def _delete(self, keys: Sequence[tuple[str, int]]) -> list[str]:
        """Delete each key at its revision; the keys deleted."""
        bucket = self._require()

        async def delete(key: str, revision: int) -> str | None:
            if not await bucket.delete(key, revision):
                return None  # written by another node since: not what was chosen
            slot = self._mirror.get(key)
            if slot is not None and slot.revision <= revision:
                del self._mirror[key]
            self._bases.pop(key, None)
            self._deleted[key] = revision
            return key

        done = await self._each(delete(key, revision) for key, revision in keys)
        return [key for key in done if key is not None]

    async def trim_dead(self, keep: int, before: float) -> tuple[list[str], int]:
        """Delete dead letters last updated before `before`, then the oldest (by
        creation) beyond `keep`; the ids deleted and the dead letters left."""
        dead = sorted((slot for slot in self._mirror.values() if slot.entry.state == "dead"),
                      key=lambda slot: (slot.created_at, slot.entry.id))
        old = [slot for slot in dead if slot.entry.updated_at < before]
        rest = [slot for slot in dead if slot.entry.updated_at >= before]
        victims = old + rest[:max(0, len(rest) - keep)]
        ids = {key_for(slot.entry.id): slot.entry.id for slot in victims}
        deleted = set(await self._delete([(key_for(slot.entry.id), slot.revision)
                                          for slot in victims]))
        removed = [ids[key] for key in ids if key in deleted]
        left = sum(1 for slot in self._mirror.values() if slot.entry.state == "dead")
        return removed, left

    async def prune(self, before: float) -> int:
        """Delete delivered entries created before `before`; how many."""
        old = [(key, slot.revision) for key, slot in self._mirror.items()
               if slot.entry.state == "delivered" and slot.created_at < before]
        return len(await self._delete(old))

    # -- reads -----------------------------------------------------------------------

    async def latest_alerts(self, limit: int) -> list[Notification]:
        """From the mirror: the newest notification of each alert, newest first."""
        return latest_per_alert((slot.entry.notification for slot in self._mirror.values()),
                                limit)

    async def recent(self, state: State | None = None, app: str | None = None,
                     limit: int = 100) -> list[Entry]:
        """The newest entries first (by creation), from the mirror."""
        slots = (slot for slot in self._mirror.values()
                 if (state is None or slot.entry.state == state)
                 and (app is None or slot.entry.notification.app == app))
        newest = heapq.nlargest(limit, slots, key=lambda s: (s.created_at, s.entry.id))
        return [_copy(slot.entry) for slot in newest]
