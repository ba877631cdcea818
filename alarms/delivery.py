"""The dispatcher: fired notifications into the outbox, then out through their notifiers.

`submit` (called by the engine on the event loop) only queues. A persister task writes what
was queued to the outbox in one transaction and only then schedules it, so nothing is sent
that a crash could forget. A scheduler task starts each due attempt as its own task, gated
by a semaphore per alarm instance (`alarm-concurrency`) and a global cap: a slow webhook
holds its own lane, never another alarm's mail. A failed attempt is rescheduled with
backoff and jitter (alarms.retry) or, when retries are used up or the failure is permanent,
kept as a dead letter until someone retries it.

Each attempt is one task and its one catch point: whatever a notifier raises is recorded
against that entry, logged once for it, and counted; the dispatcher goes on. The persister
and the scheduler each have one catch point too: an unexpected exception is logged once
with its traceback, counted (`collector_alarms_task_errors_total{task}`), and the loop
goes on after a pause. A batch the persister failed to write is put back and written one
notification at a time, so one notification that can never be written is dropped (named
in the log) without holding up the others; an entry the scheduler failed to start is put
back a little later.

What waits is bounded (alarms.bounds): at most `bounds.incoming` notifications waiting to
be written (only while the outbox cannot be written; the oldest are dropped, counted and
logged), at most `bounds.pending` waiting for delivery (the oldest not in flight become dead
letters, which `collector alarms retry` sends again), and the outbox keeps at most
`bounds.dead_letters` dead letters, none older than `bounds.dead_letter_age`
(`trim_dead_letters`, called by the component's ticker, deletes the rest, logging their
ids).

Grouping (alarm-group-wait, alarm-group-interval; alarms.grouping): a notification of an
app that groups is written at once, as any other, with its next attempt set to when its
group may be sent. When the scheduler starts a due entry of such an app, it takes every
due, pending entry of the same group (all of them come due in the same pass, sharing the
group's time) and sends them as one notification (`notification.grouped`) through the
alarm's lane; the outcome is recorded on every member (delivered, or failed and retried
together, or dead). A silence holds back the members it matches; the rest go out. After a
restart the pending members are loaded with their times and grouped again. Apps that do
not group take the path they always did, one attempt per notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import structlog

from alarms.bounds import DEFAULT, Bounds, Evictions
from alarms.errors import NotifierError
from alarms.grouping import GroupPolicy, Timing
from alarms.notification import Notification, group_key, grouped
from alarms.notifiers.base import Notifier
from alarms.outbox.base import Entry, Outbox
from alarms.retry import next_attempt
from alarms.spec import RetryPolicy
from collector.errors import StoreError
from collector.metrics import DELIVERY_BUCKETS, histogram

log = structlog.get_logger("alarms.delivery")

Key = tuple[str, str]  # (app, alarm)
# The id of the active silence holding a notification back at a time, or None.
Silencer = Callable[[Notification, float], str | None]
_STORE_RETRY = 1.0
# Dead letters are trimmed at most this often, and at least this often for their age.
TRIM_EVERY = 5.0
TRIM_AGE_EVERY = 3600.0
# The most notifications one grouped send carries; more due at once go in further sends.
MAX_MEMBERS = 500


@dataclass
class LaneFigures:
    """Delivery counts of one alarm instance, for /metrics."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0


class Dispatcher:
    """See the module docstring."""

    def __init__(self, outbox: Outbox, notifiers: Mapping[Key, Notifier],
                 policies: Mapping[str, RetryPolicy], *, max_in_flight: int = 64,
                 clock: Callable[[], float] = time.time,
                 draw: Callable[[], float] = random.random, bounds: Bounds = DEFAULT,
                 silencer: Silencer | None = None,
                 grouping: Mapping[str, Timing] | None = None) -> None:
        self._outbox = outbox
        self._notifiers = dict(notifiers)
        self._policies = dict(policies)
        self._default_policy = RetryPolicy()
        self._clock = clock
        self._draw = draw
        self._silencer = silencer
        self.silenced: Counter[Key] = Counter()
        self._global = asyncio.Semaphore(max_in_flight)
        self._lanes: dict[Key, asyncio.Semaphore] = {}
        self._incoming: list[Notification] = []
        self._persisting = 0  # notifications being written right now
        self._persist_wake = asyncio.Event()
        self._persisted = asyncio.Event()
        self._schedule_wake = asyncio.Event()
        # Pending entries by id (scheduled or in flight); the heap holds (due, seq, id) and
        # may keep stale items for entries since rescheduled, skipped when popped.
        self._pending: OrderedDict[str, Entry] = OrderedDict()
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self.figures: dict[Key, LaneFigures] = {}
        self.plugins: dict[Key, str] = {key: n.plugin for key, n in self._notifiers.items()}
        self.latency = histogram("collector_alarm_delivery_seconds",
                                 "From an alarm firing to its delivery, retries included, "
                                 "by plugin.", DELIVERY_BUCKETS, ["plugin"])
        self.errors: Counter[str] = Counter()
        self.task_errors: Counter[str] = Counter()
        self.bounds = bounds
        self.evictions = Evictions()
        # Apps that group (alarm-group-wait), and when each group may next be sent.
        self._grouping: dict[str, Timing] = dict(grouping or {})
        self.groups = GroupPolicy(evictions=self.evictions)
        self.dead_letters: int | None = None  # in the outbox, as of the last trim
        self._dead_since_trim = 0
        self._last_trim = float("-inf")
        self._last_age_trim = float("-inf")
        self._singly = 0  # notifications still to be written one at a time
        self.known = 0  # notifications the outbox held already (not scheduled again)

    # -- lifecycle -------------------------------------------------------------------

    def start(self, pending: Iterable[Entry]) -> None:
        """Schedule what the outbox still holds, and start the persister and scheduler."""
        for entry in pending:
            self._pending[entry.id] = entry
            self._push(entry)
            if self._grouping and entry.notification.app in self._grouping:
                self.groups.restored(_group_of(entry.notification), entry.next_attempt,
                                     entry.attempts, entry.updated_at)
        if len(self._pending) > self.bounds.pending:
            self._persist_wake.set()  # the persister evicts the excess
        self._workers = [asyncio.create_task(self._persist_loop(), name="alarm-persister"),
                         asyncio.create_task(self._schedule_loop(), name="alarm-scheduler")]

    async def stop(self, grace: float = 5.0) -> None:
        """Persist what was submitted, give attempts in flight `grace` seconds, then stop.

        An attempt cut short stays pending in the outbox and is sent again after a restart
        (with the same id, so a receiver can tell it has it already).
        """
        if self._incoming or self._persisting:
            self._persist_wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._drained()
        if self._incoming or self._persisting:
            log.error("alarm_outbox_unwritten", count=len(self._incoming) + self._persisting,
                      note="the outbox could not be written before shutdown")
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _drained(self) -> None:
        while self._incoming or self._persisting:
            self._persisted.clear()
            await self._persisted.wait()

    def reconfigure(self, notifiers: Mapping[Key, Notifier],
                    policies: Mapping[str, RetryPolicy],
                    grouping: Mapping[str, Timing] | None = None) -> None:
        """Deliver with these notifiers, policies and grouping from the next attempt on (a
        reload); entries already written keep the time they were given.

        What is pending or in flight stays; an entry whose alarm is gone fails as no longer
        configured, as after a restart.
        """
        self._notifiers = dict(notifiers)
        self._policies = dict(policies)
        self._grouping = dict(grouping or {})
        # Lanes are made again with the new alarm-concurrency; attempts in flight finish
        # on the lane they hold.
        self._lanes = {}
        self.plugins.update({key: n.plugin for key, n in self._notifiers.items()})

    # -- intake ----------------------------------------------------------------------

    def submit(self, notification: Notification) -> None:
        """Queue a fired notification (called on the event loop; never blocks)."""
        if len(self._incoming) >= self.bounds.incoming:
            # The outbox has not taken anything for a while: keep the newest.
            dropped = self._incoming.pop(0)
            self.evictions.evicted("incoming", self.bounds.incoming, id=dropped.id,
                                   alarm=dropped.alarm, app=dropped.app)
        self._incoming.append(notification)
        self._persist_wake.set()

    async def _persist_loop(self) -> None:
        while True:
            await self._persist_wake.wait()
            self._persist_wake.clear()
            batch: list[Notification] = []
            try:
                batch = self._take()
                if batch:
                    await self._persist(batch)
                batch = []  # written (or put back by _persist): not the catch's to retry
                if len(self._pending) > self.bounds.pending:
                    await self._evict_pending()
            except Exception as exc:
                # The persister's one catch point.
                self._persisting = 0
                if self._singly and len(batch) == 1:
                    # It failed alone too: it can never be written. Dropping it (named in
                    # the log) is the only way the alarms behind it get out.
                    self._singly -= 1
                    self.errors["outbox_unwritable"] += 1
                    self._task_failed("persister", exc, dropped=batch[0].id,
                                      alarm=batch[0].alarm, app=batch[0].app)
                else:
                    self._incoming[:0] = batch
                    self._singly = len(batch)
                    self._task_failed("persister", exc, requeued=len(batch))
                self._persisted.set()
                await asyncio.sleep(_STORE_RETRY)
                self._persist_wake.set()

    def _take(self) -> list[Notification]:
        """What to write next: all that is queued, or one at a time after a failed batch."""
        if self._singly:
            batch, self._incoming = self._incoming[:1], self._incoming[1:]
            if self._incoming:
                self._persist_wake.set()
            return batch
        batch, self._incoming = self._incoming, []
        return batch

    async def _persist(self, batch: list[Notification]) -> None:
        now = self._clock()
        self._persisting = len(batch)
        dues = self._dues(batch, now) if self._grouping else None
        try:
            known = await self._outbox.add(batch, now, dues)
        except StoreError as exc:
            self._persisting = 0
            # Kept in memory and written again shortly; not sent before it is kept.
            self.errors["outbox_write"] += 1
            log.error("alarm_outbox_write_failed", error=str(exc), count=len(batch),
                      retry_in=_STORE_RETRY)
            self._incoming[:0] = batch
            await asyncio.sleep(_STORE_RETRY)
            self._persist_wake.set()
            return
        self._persisting = 0
        if self._singly:
            self._singly -= 1
        for index, notification in enumerate(batch):
            if notification.id in known:
                # Raised again with its id (a new leader's takeover): the outbox keeps the
                # first, whose delivery is its own business (pending: already scheduled,
                # or loaded at takeover; delivered or dead: done).
                self.known += 1
                continue
            entry = Entry(notification, next_attempt=dues[index] if dues else now,
                          updated_at=now)
            self._pending[entry.id] = entry
            self._push(entry)
        self._persisted.set()

    def _dues(self, batch: list[Notification], now: float) -> list[float]:
        """When each notification may be sent: now, or its group's time (grouping)."""
        grouping = self._grouping
        return [self.groups.due(_group_of(n), grouping[n.app], now) if n.app in grouping
                else now for n in batch]

    async def _evict_pending(self) -> None:
        """Past `bounds.pending`, the oldest entries waiting (not in flight) become dead
        letters, saved in one transaction."""
        bound = self.bounds.pending
        excess = len(self._pending) - bound
        victims: list[Entry] = []
        for entry_id, entry in self._pending.items():
            if len(victims) >= excess:
                break
            if entry_id not in self._in_flight:
                victims.append(entry)
        now = self._clock()
        for entry in victims:
            del self._pending[entry.id]
            entry.state, entry.updated_at = "dead", now
            entry.last_error = (f"evicted: more than {bound} alarms were waiting for "
                                f"delivery (last error: {entry.last_error or 'none'})")
            notification = entry.notification
            self.figures.setdefault((notification.app, notification.alarm),
                                    LaneFigures()).dead += 1
        if not victims:
            return
        self._dead_since_trim += len(victims)
        self.evictions.evicted("pending", bound, len(victims), oldest=victims[0].id,
                               note="kept as dead letters; `collector alarms retry` sends "
                                    "them again")
        try:
            await self._outbox.save_many(victims)
        except StoreError as exc:
            # Still pending in the outbox: a restart schedules them again.
            self.errors["outbox_update"] += 1
            log.error("alarm_outbox_update_failed", count=len(victims), error=str(exc))

    async def trim_dead_letters(self) -> None:
        """Keep at most `bounds.dead_letters` dead letters in the outbox, none older than
        `bounds.dead_letter_age`: after new dead letters (at most every TRIM_EVERY
        seconds), and for their age every TRIM_AGE_EVERY seconds. What is deleted is
        counted and logged with its ids."""
        now = self._clock()
        due_for_age = now - self._last_age_trim >= TRIM_AGE_EVERY
        if not due_for_age and (not self._dead_since_trim
                                or now - self._last_trim < TRIM_EVERY):
            return
        self._last_trim = now
        if due_for_age:
            self._last_age_trim = now
        added, self._dead_since_trim = self._dead_since_trim, 0
        bound = self.bounds.dead_letters
        try:
            removed, self.dead_letters = await self._outbox.trim_dead(
                bound, now - self.bounds.dead_letter_age)
        except StoreError as exc:
            self._dead_since_trim += added
            self.errors["dead_letter_trim"] += 1
            log.error("alarm_outbox_trim_failed", error=str(exc))
            return
        if removed:
            self.evictions.counts["dead_letters"] += len(removed)
            # Every trim is logged (it is one line, however many): an alarm leaves the
            # outbox for good here.
            log.warning("alarm_dead_letters_evicted", count=len(removed), kept=bound,
                        max_age=self.bounds.dead_letter_age, ids=removed[:20],
                        more=max(0, len(removed) - 20))

    def sizes(self) -> dict[str, int]:
        """Entries per bounded structure (for /metrics); dead letters as of the last
        trim."""
        sizes = {"incoming": len(self._incoming), "pending": len(self._pending)}
        if self._grouping:
            sizes["groups"] = len(self.groups)
        if self.dead_letters is not None:
            sizes["dead_letters"] = self.dead_letters
        return sizes

    def _task_failed(self, task: str, exc: Exception, **context: object) -> None:
        """Log (once, with the traceback) and count an unexpected exception that one of the
        dispatcher's tasks caught at its catch point."""
        self.task_errors[task] += 1
        log.error("alarm_task_failed", task=task, error=f"{type(exc).__name__}: {exc}",
                  **context, exc_info=exc)

    def _push(self, entry: Entry) -> None:
        heap = self._heap
        if len(heap) > 2 * len(self._pending) + 1024:
            # Too many stale items (entries evicted or rescheduled): rebuilt in place, as
            # the scheduler may hold the list.
            heap[:] = [(e.next_attempt, next(self._seq), e.id) for e in
                       self._pending.values() if e.id not in self._in_flight]
            heapq.heapify(heap)
        heapq.heappush(heap, (entry.next_attempt, next(self._seq), entry.id))
        self._schedule_wake.set()

    async def _schedule_loop(self) -> None:
        while True:
            self._schedule_wake.clear()
            wait: float | None
            try:
                wait = self._start_due()
            except Exception as exc:
                # The scheduler's one catch point.
                self._task_failed("scheduler", exc)
                wait = _STORE_RETRY
            # Not asyncio.wait_for: in Python 3.11 it can swallow a cancellation that
            # arrives as the wait ends, and stop() would then wait for the next due
            # attempt (up to alarm-max-backoff) before the scheduler noticed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._schedule_wake.wait()

    def _start_due(self) -> float | None:
        """Start an attempt for every entry now due; the seconds until the next one."""
        heap = self._heap
        now = self._clock()
        grouping = self._grouping
        batches: dict[tuple[str, str, str], list[Entry]] = {}
        while heap and heap[0][0] <= now:
            due, _, entry_id = heapq.heappop(heap)
            entry = self._pending.get(entry_id)
            if entry is None or entry_id in self._in_flight or entry.next_attempt != due:
                continue
            if entry.state != "pending":
                # A replicated outbox found that another node delivered it or gave up on
                # it (and updated the entry to say so): not to be sent from here.
                del self._pending[entry_id]
                continue
            self._in_flight.add(entry_id)
            if grouping and entry.notification.app in grouping:
                # Started below, with the rest of its group due in this pass (at most
                # MAX_MEMBERS to a send, so one send stays a size a receiver takes).
                n = entry.notification
                key = (n.app, n.alarm, _group_of(n))
                members = batches.setdefault(key, [])
                if len(members) >= MAX_MEMBERS:
                    batches[(n.app, n.alarm, f"{key[2]}#{len(batches)}")] = members
                    members = batches[key] = []
                members.append(entry)
                continue
            try:
                self._launch([entry], grouping=False)
            except Exception:
                # Put back a little later (not at the head of the heap, where an entry
                # that always fails to start would hold up every other one).
                self._in_flight.discard(entry_id)
                entry.next_attempt = now + _STORE_RETRY
                self._push(entry)
                self._put_back(batches.values(), now)
                raise
        groups = list(batches.values())
        for index, entries in enumerate(groups):
            try:
                self._launch(entries, grouping=True)
            except Exception:
                self._put_back(groups[index:], now)
                raise
            self.groups.flushed(_group_of(entries[0].notification), now)
        return heap[0][0] - now if heap else None

    def _put_back(self, groups: Iterable[list[Entry]], now: float) -> None:
        """Groups taken from the heap but not started: back, a little later."""
        for entries in groups:
            for entry in entries:
                self._in_flight.discard(entry.id)
                entry.next_attempt = now + _STORE_RETRY
                self._push(entry)

    def _launch(self, entries: list[Entry], *, grouping: bool) -> None:
        """Start one attempt (of one entry, or of a group's entries) as its own task."""
        task = asyncio.create_task(self._attempt(entries, grouping))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- one attempt -----------------------------------------------------------------

    def _lane(self, key: Key, policy: RetryPolicy) -> asyncio.Semaphore:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = asyncio.Semaphore(policy.concurrency)
        return lane

    async def _attempt(self, entries: list[Entry], grouping: bool) -> None:
        """One send: of one entry, or (`grouping`) of a group's entries as one
        notification, the outcome recorded on each."""
        notification = entries[0].notification
        key = (notification.app, notification.alarm)
        policy = self._policies.get(notification.app, self._default_policy)
        figures = self.figures.setdefault(key, LaneFigures())
        try:
            if self._silencer is not None:
                # Checked at each attempt, not at intake: a silence made while an alarm
                # waits for a retry (or for a restart) holds it too, and one that has
                # ended does not.
                entries = await self._unsilenced(entries)
                if not entries:
                    return
            sent = grouped([e.notification for e in entries]) if grouping else notification
            notifier = self._notifiers.get(key)
            if notifier is None:
                await self._fail(entries, sent, policy, figures, NotifierError(
                    f"alarm {notification.alarm!r} is no longer configured for app "
                    f"{notification.app!r}", permanent=True))
                return
            async with self._lane(key, policy), self._global:
                try:
                    # The notifiers time out on their own; this bound only catches one that
                    # would not, so a lane can never be held forever.
                    async with asyncio.timeout(policy.timeout + 5.0):
                        outcome = await notifier.send(sent)
                except NotifierError as exc:
                    await self._fail(entries, sent, policy, figures, exc)
                    return
                except TimeoutError:
                    await self._fail(entries, sent, policy, figures, NotifierError(
                        f"no answer within {policy.timeout + 5.0:g} s"))
                    return
                except Exception as exc:
                    log.exception("alarm_notifier_crashed", alarm=notification.alarm,
                                  app=notification.app, plugin=notifier.plugin)
                    await self._fail(entries, sent, policy, figures, NotifierError(
                        f"internal error: {type(exc).__name__}: {exc}"))
                    return
            await self._delivered(entries, sent, outcome, figures)
        except Exception as exc:
            # The attempt's one catch point for what is not the notifier's failure (that is
            # handled above): a bug in recording the outcome. The entries leave the
            # schedule, so a bug that recurs cannot spin; they stay pending in the outbox
            # and are sent again after a restart.
            for entry in entries:
                self._pending.pop(entry.id, None)
            self._task_failed("attempt", exc, id=entries[0].id, alarm=notification.alarm,
                              app=notification.app, members=len(entries))
        finally:
            for entry in entries:
                self._in_flight.discard(entry.id)

    async def _unsilenced(self, entries: list[Entry]) -> list[Entry]:
        """Record the entries an active silence holds back; the others."""
        assert self._silencer is not None
        now = self._clock()
        rest: list[Entry] = []
        for entry in entries:
            silence = self._silencer(entry.notification, now)
            if silence is None:
                rest.append(entry)
            else:
                await self._silence(entry, silence)
        return rest

    async def _silence(self, entry: Entry, silence_id: str) -> None:
        now = self._clock()
        entry.state, entry.outcome, entry.updated_at = "silenced", silence_id, now
        self._pending.pop(entry.id, None)
        self._in_flight.discard(entry.id)
        notification = entry.notification
        self.silenced[(notification.app, notification.alarm)] += 1
        log.info("alarm_silenced", id=entry.id, alarm=notification.alarm,
                 app=notification.app, silence=silence_id)
        await self._save(entry)

    async def _delivered(self, entries: list[Entry], sent: Notification, outcome: str,
                         figures: LaneFigures) -> None:
        now = self._clock()
        # A member says which grouped send carried it (its id is the webhook-id).
        count = len(entries)
        recorded = (f"{outcome} (grouped: {sent.id}, {count} member{'s' * (count != 1)})"
                    if sent.members else outcome)
        for entry in entries:
            entry.attempts += 1
            entry.state, entry.outcome, entry.delivered_at, entry.updated_at = (
                "delivered", recorded, now, now)
            self._pending.pop(entry.id, None)
            figures.delivered += 1
            notification = entry.notification
            self.latency.labels(notification.plugin).observe(
                max(0.0, now - (notification.created_at or now)))
        log.info("alarm_delivered", id=sent.id, alarm=sent.alarm, app=sent.app,
                 plugin=sent.plugin, outcome=outcome, attempts=entries[0].attempts,
                 **({"members": len(entries)} if sent.members else {}))
        await self._save_all(entries)

    async def _fail(self, entries: list[Entry], sent: Notification, policy: RetryPolicy,
                    figures: LaneFigures, error: NotifierError) -> None:
        now = self._clock()
        draw = self._draw()
        retried: list[tuple[Entry, float]] = []
        dead = 0
        for entry in entries:
            entry.attempts += 1
            entry.last_error = str(error)
            entry.updated_at = now
            due = next_attempt(entry.attempts, error.permanent, policy, now, draw)
            if due is None:
                entry.state = "dead"
                self._pending.pop(entry.id, None)
                figures.dead += 1
                self._dead_since_trim += 1
                dead += 1
            else:
                retried.append((entry, due))
        # A group's members are retried together, at the latest of their times.
        due_all = max((due for _, due in retried), default=None)
        for entry, _ in retried:
            assert due_all is not None
            entry.next_attempt = due_all
            figures.retried += 1
        attempts = max(entry.attempts for entry in entries)
        context = {"id": sent.id, "alarm": sent.alarm, "app": sent.app,
                   "plugin": sent.plugin, "error": str(error), "attempts": attempts,
                   **({"members": len(entries)} if sent.members else {})}
        if dead:
            log.error("alarm_dead", **context, **({"dead": dead} if sent.members else {}),
                      note="kept as a dead letter; `collector alarms retry` sends it again")
        if due_all is not None:
            # Once per entry: an outage must not turn into one log line per retry.
            (log.warning if attempts == 1 else log.debug)(
                "alarm_delivery_failed", **context, retry_in=round(due_all - now, 3))
        await self._save_all(entries)
        for entry, _ in retried:
            self._push(entry)
        if retried and len(self._pending) > self.bounds.pending:
            # Entries in flight cannot be evicted; now these can.
            self._persist_wake.set()

    async def _save_all(self, entries: list[Entry]) -> None:
        if len(entries) == 1:
            await self._save(entries[0])
            return
        try:
            await self._outbox.save_many(entries)
        except StoreError as exc:
            self.errors["outbox_update"] += 1
            log.error("alarm_outbox_update_failed", ids=[e.id for e in entries[:20]],
                      count=len(entries), error=str(exc))

    async def _save(self, entry: Entry) -> None:
        try:
            await self._outbox.save(entry)
        except StoreError as exc:
            # The delivery itself happened (or failed) regardless; at worst a restart sends
            # it once more, with the same id.
            self.errors["outbox_update"] += 1
            log.error("alarm_outbox_update_failed", id=entry.id, error=str(exc))

    @property
    def intake_idle(self) -> bool:
        """Whether everything submitted so far is in the outbox (or was dropped, counted):
        nothing queued, nothing being written."""
        return not self._incoming and not self._persisting

    def resume(self, entries: Iterable[Entry]) -> None:
        """Schedule entries made pending elsewhere (another node's `retry`, in cluster
        mode); those already scheduled here are left as they are."""
        for entry in entries:
            if entry.id not in self._pending:
                self._pending[entry.id] = entry
                self._push(entry)
        if len(self._pending) > self.bounds.pending:
            self._persist_wake.set()

    # -- operator actions ------------------------------------------------------------

    async def retry(self, ids: list[str] | None) -> list[Entry]:
        """Dead letters (those named, or all) back to pending, due now."""
        entries = await self._outbox.requeue(ids, self._clock())
        for entry in entries:
            self._pending[entry.id] = entry
            self._push(entry)
        if len(self._pending) > self.bounds.pending:
            self._persist_wake.set()  # the persister evicts the excess
        return entries

    def pending_counts(self) -> Counter[Key]:
        """Pending entries per alarm instance (scheduled or in flight)."""
        return Counter((e.notification.app, e.notification.alarm)
                       for e in self._pending.values())


def _group_of(notification: Notification) -> str:
    """The notification's group key (computed for one written before groups existed)."""
    return notification.group or group_key(notification.app, notification.alarm,
                                           notification.condition)
