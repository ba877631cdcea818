"""The alarms in cluster mode: one leader evaluates the shared log and delivers.

Every node opens the outbox (for `/v1/alarms` and `collector alarms retry`) and takes part
in the lease (collector.cluster.lease). The leader alone runs an AlarmEngine and a
Dispatcher:

- **Evaluation follows the materializer**: every node's materializer applies every message
  of `LOGS` in stream order and hands (sequence, time, records) to `_on_applied`; on the
  leader the engine evaluates them, so each rule sees each line once cluster-wide, with
  one engine's per-source state, whichever node received the line.
- **Stable ids**: notifications are named by their stream position (alarms.stable_ids).
- **The floor**: the last sequence whose notifications are all in the outbox, written to
  the bucket `alarms` (key `floor`, no TTL) at most every second and on stepping down,
  only ever upwards.
- **Takeover**: a new leader loads what is pending and delivers it, then replays the log
  from (the floor's time - the longest window its rules need) with notifications
  suppressed up to the floor, and with them after it until it has caught up with its
  materializer; then it evaluates live. What it raises again for a position the old
  leader had handled has the same id, and the outbox keeps the first.
- **Losing the lease** stops evaluation at once and the dispatcher shortly after
  (deliveries in flight may finish: at-least-once, with the same webhook-id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import aiohttp
import structlog
from aiohttp import web

from alarms.api import AlarmsApi
from alarms.delivery import Dispatcher
from alarms.engine import AlarmEngine
from alarms.grouping import timings
from alarms.metrics import families
from alarms.notification import Notification
from alarms.notifiers.base import Notifier, Services, api_url
from alarms.notifiers.registry import build_all
from alarms.outbox.base import Entry
from alarms.outbox.kv import KvOutbox
from alarms.silence_api import SilencesApi
from alarms.silence_kv import BUCKET as SILENCES_BUCKET
from alarms.silence_kv import KvSilences
from alarms.spec import AppRules, RetryPolicy
from alarms.stable_ids import stable_id
from alarms.ticker import tick_forever
from alarms.warmup import warmup_seconds
from collector.cluster.batch import decode
from collector.cluster.errors import ClusterError
from collector.cluster.ids import assign
from collector.cluster.kv import Bucket
from collector.cluster.lease import BUCKET, TTL_SECONDS, Lease
from collector.config.model import Config
from collector.errors import CollectorError, StoreError
from collector.metrics import Metric, counter, gauge
from collector.record import Record
from collector.server.reload import same_settings

if TYPE_CHECKING:
    from collector.cluster.component import ClusterComponent
    from collector.server.context import Context

log = structlog.get_logger("alarms")

FLOOR_EVERY = 1.0
FLOOR_BUCKET = "alarms"
FLOOR_KEY = "floor"
# Record times are the receiving node's clock, the replay's start is the stream's: a
# margin for the difference.
CLOCK_MARGIN = 2.0
# How long a takeover's replay may take to catch up before evaluation goes live anyway.
REPLAY_BOUND = 60.0
# Without a floor, how far back the first leader evaluates (notifications on).
NO_FLOOR_LOOKBACK = 60.0

Mode = Literal["follower", "warming", "live"]


def parse_floor(value: bytes) -> tuple[int, float]:
    """(sequence, stream time) from the floor key's value; ClusterError when unreadable."""
    try:
        doc = json.loads(value)
        return int(doc["seq"]), float(doc["time"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"unreadable alarms floor {value[:80]!r}: {exc}") from None


def floor_value(seq: int, at: float, node: str) -> bytes:
    """The floor key's value."""
    return json.dumps({"seq": seq, "time": at, "node": node},
                      separators=(",", ":")).encode()


class ClusterAlarmsComponent:
    """See the module docstring. Started after the cluster component (it reads the
    cluster's connection and materializer)."""

    def __init__(self, config: Config, cluster: ClusterComponent,
                 outbox: Callable[[], KvOutbox]) -> None:
        self._config = config
        self._cluster = cluster
        assert config.cluster is not None
        self._node = config.cluster.node
        self._rules: list[AppRules] = list(config.apps)
        self._outbox = outbox()
        self._silences = KvSilences(
            lambda: self._cluster.connection.bucket(SILENCES_BUCKET))
        self._boot = secrets.token_hex(6)
        self._session: aiohttp.ClientSession | None = None
        self._services: Services | None = None
        self._notifiers: dict[tuple[str, str], Notifier] = {}
        self._lease: Lease | None = None
        self._mode: Mode = "follower"
        self._engine: AlarmEngine | None = None
        self._dispatcher: Dispatcher | None = None
        self._suppressing = False
        # While a takeover replays past the floor: what it raises, held until checked
        # against the outbox (the old leader may have written and even delivered it).
        self._holding: list[Notification] | None = None
        self._evaluated = 0  # the last stream sequence the engine evaluated
        self._evaluated_time = 0.0
        self._floor_written = 0
        self._floor_bucket: Bucket | None = None
        self._takeover: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._joining: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.replayed = 0  # messages replayed by takeovers
        self.held_back = 0  # notifications suppressed by a replay (already handled)
        self.known = 0  # raised again after the floor, found in the outbox already
        self.failures = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, context: Context) -> None:
        """Build the notifiers; then, once the cluster is up (at once, or when NATS first
        answers if the node started without it), open the outbox, listen to the
        materializer and join the lease."""
        self._session = aiohttp.ClientSession()
        self._services = Services(publish=context.ingest.publish,
                                  next_ids=context.ingest.next_ids,
                                  api_url=api_url(self._config.http.host,
                                                  self._config.http.port))
        self._notifiers = self._build_notifiers(self._rules)
        context.health["alarms"] = self.health
        self._cluster.alarms_leader = lambda: self.is_leader
        if self._cluster.up.is_set():
            await self._join()
        else:
            log.info("cluster_alarms_waiting", note="NATS not up yet: alarms join when it is")
            self._joining = asyncio.create_task(self._join_when_up(), name="alarms-join")

    async def _join(self) -> None:
        await self._outbox.open()
        self._outbox.on_requeued(self.on_requeued)
        # Before the lease: a leader matches every delivery against what it holds.
        await self._silences.open()
        materializer = self._cluster.materializer
        assert materializer is not None
        materializer.add_listener(self._on_applied)
        connection = self._cluster.connection
        self._lease = Lease(lambda: connection.bucket(BUCKET, ttl=TTL_SECONDS, history=1),
                            self._node, self._boot, self._on_lease)
        await self._lease.start()
        self._ticker = asyncio.create_task(self._tick(), name="cluster-alarm-ticker")
        log.info("cluster_alarms_started", apps=len(self._rules),
                 alarms=len(self._notifiers), leader=self._lease.is_leader)

    async def _join_when_up(self) -> None:
        await self._cluster.up.wait()
        delay = 1.0
        while True:
            try:
                await self._join()
                return
            except (StoreError, ClusterError) as exc:
                # NATS answered the bring-up and is gone again: the outbox cannot be read.
                log.warning("cluster_alarms_join_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _build_notifiers(self, rules: list[AppRules]) -> dict[tuple[str, str], Notifier]:
        assert self._services is not None
        assert self._session is not None
        return build_all(rules, self._services, self._session)

    async def reload(self, config: Config) -> None:
        """New rules and notifiers; a leader's engine keeps the state of unchanged apps."""
        rules = list(config.apps)
        self._config = config
        if same_settings(rules, self._rules):
            return
        self._notifiers = self._build_notifiers(rules)
        if self._dispatcher is not None:
            self._dispatcher.reconfigure(self._notifiers, self._policies(rules),
                                         timings(rules))
        if self._engine is not None:
            self._engine.replace_rules(rules, same_settings)
        self._rules = rules
        log.info("alarms_reloaded", apps=len(rules), alarms=len(self._notifiers))

    @staticmethod
    def _policies(rules: Iterable[AppRules]) -> dict[str, RetryPolicy]:
        return {app.app: app.retry for app in rules}

    async def stop(self) -> None:
        """Stop evaluating, write the floor, give up the lease, close."""
        if self._joining is not None:
            self._joining.cancel()
            await asyncio.gather(self._joining, return_exceptions=True)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        leading = self._mode == "live"
        await self._step_down(wait=True)
        if leading:
            await self._write_floor()
        if self._lease is not None:
            await self._lease.stop()
        if self._stopping:
            await asyncio.wait(set(self._stopping))
        if self._session is not None:
            await self._session.close()
        await self._outbox.close()
        await self._silences.close()

    # -- the lease -------------------------------------------------------------------

    async def _on_lease(self, leader: bool) -> None:
        if leader:
            await self._step_down(wait=False)
            self._takeover = asyncio.create_task(self._take_over(), name="alarms-takeover")
        else:
            await self._step_down(wait=False)

    async def _step_down(self, *, wait: bool) -> None:
        """Stop evaluating now; stop the dispatcher (at once, or in the background)."""
        was = self._mode
        self._mode = "follower"
        self._engine = None
        if self._takeover is not None:
            self._takeover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._takeover
            self._takeover = None
        dispatcher, self._dispatcher = self._dispatcher, None
        if was != "follower":
            log.info("alarms_stepped_down", evaluated=self._evaluated)
        if dispatcher is None:
            return
        # The grace lets deliveries in flight finish; the next leader may send them again,
        # with the same webhook-id.
        task = asyncio.create_task(dispatcher.stop(grace=2.0), name="alarm-dispatcher-stop")
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        if wait:
            await task

    async def _take_over(self) -> None:
        """Deliver what is pending, rebuild the engine's state from the log, go live."""
        started = time.monotonic()
        self._mode = "warming"
        rules = self._rules
        dispatcher = Dispatcher(self._outbox, self._notifiers, self._policies(rules),
                                silencer=self._silence_of, grouping=timings(rules))
        self._dispatcher = dispatcher
        pending = self._outbox.pending()
        dispatcher.start(pending)
        engine = AlarmEngine(rules, self._submit, ids=stable_id)
        self._engine = engine
        restored = await self._restore(engine)
        floor, floor_time = await self._read_floor()
        window = warmup_seconds(rules)
        try:
            replayed = await self._replay(engine, floor, floor_time - window - CLOCK_MARGIN)
        except ClusterError as exc:
            # Live anyway: a leader that cannot read the log cannot evaluate it either; the
            # lease decides whether it stays leader.
            log.error("alarms_replay_failed", error=str(exc), floor=floor)
            replayed = 0
            self._evaluated = max(self._evaluated, floor)
            self._mode = "live"
        self._suppressing = False
        self._floor_written = floor
        log.info("alarms_leader_ready", floor=floor, evaluated=self._evaluated,
                 replayed=replayed, window=window, pending=len(pending), restored=restored,
                 seconds=round(time.monotonic() - started, 3))

    async def _restore(self, engine: AlarmEngine) -> int:
        """Re-open the alerts the outbox says were firing, before the replay: what the
        replay raises again for them has the same ids (the outbox keeps the first), and
        an alert that fired before the replay's start is still resolved."""
        try:
            return engine.restore(await self._outbox.latest_alerts(engine.bounds.alerts))
        except StoreError as exc:
            log.error("alarm_outbox_unreadable", error=str(exc), step="restore")
            return 0

    async def _read_floor(self) -> tuple[int, float]:
        """The floor; with none yet (no leader ever evaluated), nothing is held back and
        the replay starts NO_FLOOR_LOOKBACK seconds ago: lines that came while the cluster
        had no leader yet are evaluated, older history (alarm rules added to a running
        cluster) is not."""
        try:
            bucket = await self._floor_store()
            item = await bucket.get(FLOOR_KEY)
            if item is not None:
                floor = parse_floor(item.value)
                last = await self._cluster.connection.last_seq()
                if floor[0] <= last:
                    return floor
                # LOGS was deleted and made again: a floor past its end would hold back
                # every alarm until the new stream caught up with the old one.
                log.warning("alarms_floor_past_stream", floor=floor[0], stream_last=last)
                await bucket.delete(FLOOR_KEY, item.revision)
        except ClusterError as exc:
            log.error("alarms_floor_unreadable", error=str(exc))
        return 0, time.time() - NO_FLOOR_LOOKBACK

    async def _floor_store(self) -> Bucket:
        if self._floor_bucket is None:
            self._floor_bucket = await self._cluster.connection.bucket(FLOOR_BUCKET)
        return self._floor_bucket

    async def _replay(self, engine: AlarmEngine, floor: int, since: float) -> int:
        """Evaluate the log from `since` (stream time) until caught up with the
        materializer, notifications suppressed up to `floor`; then go live."""
        materializer = self._cluster.materializer
        assert materializer is not None
        self._evaluated = 0
        if max(floor, materializer.position.seq) == 0:
            self._mode = "live"
            return 0
        connection = self._cluster.connection
        reader = await connection.ordered_since(
            datetime.fromtimestamp(max(0.0, since), UTC))
        seen: set[str] = set()
        count = last_id = 0
        self._holding = []
        deadline = time.monotonic() + REPLAY_BOUND
        try:
            while True:
                target = max(floor, materializer.position.seq)
                if self._evaluated >= target:
                    # Before any await: the materializer's next message must find it live.
                    self._mode = "live"
                    break
                if time.monotonic() > deadline:
                    log.error("alarms_replay_incomplete", evaluated=self._evaluated,
                              target=target, note="lines in between are not evaluated")
                    self._evaluated = target
                    self._mode = "live"
                    break
                msg = await reader.next(wait=1.0)
                if msg is None:
                    continue
                seq = msg.seq
                if seq <= self._evaluated:
                    continue
                try:
                    batch, records = decode(msg.data)
                except ClusterError:
                    self._evaluated = seq  # the materializer skips it too
                    continue
                if batch.msg_id in seen:
                    continue
                seen.add(batch.msg_id)
                # The materializer's ids (receive times), as far as the replay can know
                # the previous message's last id: exact from the first pause in traffic.
                stamp = msg.timestamp_us
                first, last_id = assign(last_id, stamp, len(records))
                for offset, record in enumerate(records):
                    record.id = first + offset
                self._suppressing = seq <= floor
                engine.consume_message(seq, stamp / 1e6, records)
                self._evaluated = seq
                self._evaluated_time = stamp / 1e6
                count += 1
        finally:
            self._suppressing = False
            self.replayed += count
            await reader.close()
            await self._release()
        return count

    async def _release(self) -> None:
        """Submit what the replay raised past the floor, but for what the outbox holds
        already: the dispatcher would schedule those again (the outbox keeps the first
        write, the dispatcher does not know), and the old leader may have delivered them;
        what is still pending there was loaded at takeover."""
        outbox = self._outbox
        try:
            known = {entry.id for entry in await outbox.recent(None, None,
                                                              max(1, len(outbox)))}
        except StoreError as exc:
            log.error("alarm_outbox_unreadable", error=str(exc))
            known = set()
        held, self._holding = self._holding or [], None
        for notification in held:
            if notification.id in known:
                self.known += 1
            else:
                self._submit(notification)

    # -- evaluation ------------------------------------------------------------------

    def _on_applied(self, seq: int, at: float, records: Sequence[Record]) -> None:
        """The materializer applied a message: evaluate it on a live leader."""
        engine = self._engine
        if self._mode != "live" or engine is None or seq <= self._evaluated:
            return
        lease = self._lease
        if lease is not None and lease.state.expired(time.monotonic()):
            # Not renewed in time (a stalled process): it may lead no longer, and the lease
            # task will say so; evaluating now could only repeat the next leader's work.
            return
        try:
            engine.consume_message(seq, at, records)
        except Exception:
            # The evaluation's one catch point: a bug in a condition is logged and counted,
            # and never stops the materializer.
            self.failures += 1
            log.exception("alarm_evaluation_failed", seq=seq)
        self._evaluated = seq
        self._evaluated_time = at

    def _submit(self, notification: Notification) -> None:
        if self._suppressing:
            self.held_back += 1
            return
        if self._holding is not None:
            self._holding.append(notification)
            return
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.submit(notification)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_floor = 0.0

        async def step() -> None:
            nonlocal next_floor
            engine, dispatcher = self._engine, self._dispatcher
            if self._mode != "live" or engine is None or dispatcher is None:
                return
            engine.tick()
            await dispatcher.trim_dead_letters()
            if loop.time() >= next_floor:
                next_floor = loop.time() + FLOOR_EVERY
                await self._write_floor()

        async def prune() -> None:
            # The leader's duty, like every write of delivery state.
            if self._mode == "live":
                await self._outbox.prune(time.time() - self._config.store.retention)

        await tick_forever(step, prune)

    async def _write_floor(self) -> None:
        """Move the floor up to what is evaluated, once its notifications are all in the
        outbox; never down (compare-and-set), so a late write of an old leader is harmless."""
        dispatcher = self._dispatcher
        seq, at = self._evaluated, self._evaluated_time
        if seq <= self._floor_written or (dispatcher is not None
                                          and not dispatcher.intake_idle):
            return
        try:
            bucket = await self._floor_store()
            for _ in range(3):
                item = await bucket.get(FLOOR_KEY)
                if item is None:
                    written = await bucket.create(FLOOR_KEY, floor_value(seq, at, self._node))
                else:
                    if parse_floor(item.value)[0] >= seq:
                        self._floor_written = seq
                        return
                    written = await bucket.update(FLOOR_KEY, floor_value(seq, at, self._node),
                                                  item.revision)
                if written is not None:
                    self._floor_written = seq
                    return
        except CollectorError as exc:
            log.warning("alarms_floor_not_written", seq=seq, error=str(exc))

    # -- what others see -------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this node holds the alarms lease."""
        return self._lease is not None and self._lease.is_leader

    def health(self) -> dict[str, object]:
        """For /healthz: whether this node leads the alarms, and how far it evaluated."""
        return {"leader": self.is_leader, "mode": self._mode, "evaluated": self._evaluated}

    async def retry(self, ids: list[str] | None) -> list[Entry]:
        """Dead letters back to pending: through the leader's dispatcher here, or into the
        outbox for the leader to pick up (`on_requeued`)."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            return await dispatcher.retry(ids)
        return await self._outbox.requeue(ids, time.time())

    def on_requeued(self, entries: Sequence[Entry]) -> None:
        """Entries another node made pending: the leader schedules them."""
        if self._dispatcher is not None:
            self._dispatcher.resume(entries)

    def _silence_of(self, notification: Notification, now: float) -> str | None:
        silence = self._silences.match(notification, now)
        return silence.id if silence is not None else None

    def routes(self) -> list[web.RouteDef]:
        """`/v1/alarms`, `/v1/alarms/retry` and `/v1/silences`, on every node."""
        return [*AlarmsApi(self._outbox, self).routes(),
                *SilencesApi(self._silences).routes()]

    def metric_families(self) -> Iterable[Metric]:
        """The lease, and on the leader the alarms' own figures."""
        leader = gauge("collector_cluster_alarms_leader",
                       "1 while this node holds the alarms lease")
        leader.add_metric([], 1 if self.is_leader else 0)
        yield leader
        changes = counter("collector_cluster_leader_changes",
                          "Times this node took or lost the alarms lease")
        changes.add_metric([], self._lease.state.changes if self._lease else 0)
        yield changes
        evaluated = gauge("collector_cluster_alarms_evaluated_sequence",
                          "Last stream sequence the alarms engine evaluated (leader)")
        evaluated.add_metric([], self._evaluated)
        yield evaluated
        held = counter("collector_cluster_alarms_replay_suppressed",
                       "Notifications a takeover's replay raised again and held back: "
                       "below the floor, or past it and found in the outbox", ["reason"])
        held.add_metric(["floor"], self.held_back)
        held.add_metric(["in_outbox"], self.known)
        yield held
        if self._engine is not None and self._dispatcher is not None:
            yield from families(self._engine, self._dispatcher)
