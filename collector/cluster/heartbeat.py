"""Heartbeats: every few seconds each node writes its figures to the KV bucket `nodes`
(key = node name, TTL three intervals) and polls the streams' info, which tells /healthz
whether `LOGS` has a leader and /metrics what the streams hold.

The document is built by `Tracker`, a pure object fed with `Figures` (counters as they
stand); `Heartbeat` is the loop around it, with one catch point.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from collector.cluster.connection import Connection
from collector.cluster.errors import ClusterError, describe
from collector.cluster.kv import Bucket, Item
from collector.cluster.status import TTL_FACTOR, Roster, parse
from collector.cluster.stream import STREAM
from collector.cluster.survey import StreamView, bucket_keys, streams
from collector.metrics import Histogram

log = structlog.get_logger("collector.cluster")

BUCKET = "nodes"
# Lag that rose at each of this many heartbeats in a row is "growing".
LAG_GROWTH_BEATS = 6
# Publish latency quantiles cover this much time (an idle interval has no publishes).
LATENCY_WINDOW = 60.0

Buckets = tuple[tuple[float, float], ...]
"""A histogram's cumulative bucket counts, (upper bound, count), +Inf last."""


@dataclass(frozen=True)
class Figures:
    """What a node's counters say at one moment (cumulative counts since start)."""

    node: str
    boot: str
    started_at: float
    time: float
    interval: float
    listeners: tuple[dict[str, str], ...] = ()
    received: int = 0
    accepted: int = 0
    acked: int = 0
    spool_batches: int = 0
    spool_lines: int = 0
    spool_bytes: int = 0
    applied_seq: int = 0
    stream_last_seq: int | None = None
    latency: Buckets = ()
    alarms_leader: bool | None = None


def buckets_of(source: Histogram) -> Buckets:
    """The histogram's cumulative bucket counts as they stand."""
    found: list[tuple[float, float]] = []
    for family in source.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found.append((float(sample.labels["le"]), float(sample.value)))
    return tuple(sorted(found))


def quantile(q: float, buckets: Buckets) -> float | None:
    """The q-quantile of cumulative bucket counts, interpolated within its bucket as
    Prometheus's histogram_quantile does; None without observations. A quantile in the
    +Inf bucket is reported as the largest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def difference(now: Buckets, before: Buckets) -> Buckets:
    """Observations between two readings of the same histogram."""
    if len(now) != len(before):
        return now
    return tuple((bound, count - old) for (bound, count), (_, old) in zip(now, before,
                                                                           strict=True))


def growing(samples: Sequence[int], beats: int = LAG_GROWTH_BEATS) -> bool:
    """Whether the lag rose at each of the last `beats` heartbeats."""
    if len(samples) <= beats:
        return False
    recent = list(samples)[-(beats + 1):]
    return all(later > earlier for earlier, later in itertools.pairwise(recent))


@dataclass
class Tracker:
    """Turns successive Figures into heartbeat documents: lines/s over the last interval,
    publish latency over the last minute (since start, in the first minute), how long the
    spool has held something, whether the lag keeps growing."""

    previous: Figures | None = None
    spool_since: float | None = None
    lags: deque[int] = field(default_factory=lambda: deque(maxlen=LAG_GROWTH_BEATS + 1))
    latencies: deque[tuple[float, Buckets]] = field(default_factory=deque)
    window: float = LATENCY_WINDOW

    def document(self, figures: Figures) -> dict[str, Any]:
        """The heartbeat for these figures (JSON-ready)."""
        previous, self.previous = self.previous, figures
        rate: float | None = None
        if previous is not None and figures.time > previous.time:
            # A listener closed by a reload takes its count with it: no negative rate.
            rate = round(max(0, figures.received - previous.received)
                         / (figures.time - previous.time), 3)
        while self.latencies and self.latencies[0][0] < figures.time - self.window:
            self.latencies.popleft()
        latency = (difference(figures.latency, self.latencies[0][1]) if self.latencies
                   else figures.latency)
        self.latencies.append((figures.time, figures.latency))
        if figures.spool_batches == 0:
            self.spool_since = None
        elif self.spool_since is None:
            self.spool_since = figures.time
        lag: int | None = None
        if figures.stream_last_seq is not None:
            lag = max(0, figures.stream_last_seq - figures.applied_seq)
            self.lags.append(lag)
        return {
            "node": figures.node,
            "boot": figures.boot,
            "started_at": figures.started_at,
            "time": figures.time,
            "interval": figures.interval,
            "listeners": list(figures.listeners),
            "lines_per_second": rate,
            "received": figures.received,
            "accepted": figures.accepted,
            "acked": figures.acked,
            "spool": {"batches": figures.spool_batches, "lines": figures.spool_lines,
                      "bytes": figures.spool_bytes, "since": self.spool_since},
            "materializer": {"applied_seq": figures.applied_seq, "lag": lag,
                             "lag_growing": growing(self.lags)},
            "publish_seconds": {"p50": quantile(0.5, latency),
                                "p99": quantile(0.99, latency), "window": self.window},
            "alarms_leader": figures.alarms_leader,
        }


class Heartbeat:
    """Two loops: write this node's heartbeat and read everyone's; poll the streams. A
    failure is logged once per outage (`heartbeat_failed` or `stream_poll_failed`, then
    `..._recovered`) and counted; the loops go on."""

    def __init__(self, connection: Connection, node: str, interval: float,
                 sample: Callable[[int | None], Figures], roster: Roster) -> None:
        self._connection = connection
        self.node = node
        self.interval = interval
        self._sample = sample
        self.roster = roster
        self._tracker = Tracker()
        self._bucket: Bucket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.failures: Counter[str] = Counter()
        """Failed rounds by step: heartbeat, stream_poll."""
        self._failing: set[str] = set()
        self.beats = 0
        self.last_document: dict[str, Any] | None = None
        self.documents: list[dict[str, Any]] = []
        """Every node's heartbeat as last read."""
        self.streams: list[StreamView] = []
        self.streams_error: str | None = None
        self.leader_seen: float | None = None
        """time.monotonic() when `LOGS` last answered with a leader."""

    @property
    def ttl(self) -> float:
        """How long a heartbeat stays in the bucket."""
        return self.interval * TTL_FACTOR

    def leader_fresh(self, now: float | None = None) -> bool:
        """Whether `LOGS` had a leader at a poll within the last two intervals (plus one
        second for a slow poll)."""
        if self.leader_seen is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self.leader_seen <= 2 * self.interval + 1.0

    def start(self) -> None:
        """Beat and poll in the background, the first time at once: two tasks, so that a
        slow stream listing (the meta leader being re-elected) does not delay a beat."""
        self._tasks = [
            asyncio.create_task(self._every(self.beat, "heartbeat"), name="cluster-heartbeat"),
            asyncio.create_task(self._every(self.poll_streams, "stream_poll"),
                                name="cluster-stream-poll")]

    async def bucket(self) -> Bucket:
        """The `nodes` bucket (created with this node's TTL when absent)."""
        if self._bucket is None:
            self._bucket = await self._connection.bucket(BUCKET, ttl=self.ttl, history=1)
        return self._bucket

    async def read_nodes(self) -> list[Item]:
        """Every heartbeat in `nodes`, noted in the roster. Read key by key (a key that
        expires meanwhile is left out): a watch would create a consumer every round,
        which after a NATS server's death timed out for many seconds."""
        bucket = await self.bucket()
        keys = await bucket_keys(self._connection.jetstream(), BUCKET)
        found = await asyncio.gather(*(bucket.get(key) for key in keys))
        items = [item for item in found if item is not None]
        self.roster.observe(items, time.time())
        self.documents = [d for d in (parse(i) for i in items if not i.deleted) if d]
        return items

    async def poll_streams(self) -> None:
        """Every stream's info; remembers when `LOGS` last had a leader."""
        try:
            self.streams = await streams(self._connection.jetstream(),
                                         within=max(1.0, 2 * self.interval))
        except ClusterError as exc:
            self.streams_error = str(exc)
            raise
        self.streams_error = None
        if any(view.name == STREAM and view.leader for view in self.streams):
            self.leader_seen = time.monotonic()

    async def beat(self) -> None:
        """One round: this node's document (its lag from the last stream poll), then
        everyone's."""
        logs = next((view for view in self.streams if view.name == STREAM), None)
        figures = self._sample(logs.last_seq if logs and self.streams_error is None
                               else None)
        document = self._tracker.document(figures)
        self.last_document = document
        # Bounded by the interval (the KV calls' own bound is 5 s): a beat that cannot be
        # written in time is a failed beat, and the next one is due.
        async with asyncio.timeout(max(1.0, self.interval)):
            bucket = await self.bucket()
            await bucket.put(self.node, json.dumps(document).encode())
            self.beats += 1
            await self.read_nodes()

    async def _every(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            started = time.monotonic()
            try:
                await step()
            except Exception as exc:
                # The task's one catch point: NATS away or without quorum, or a bug.
                self.failures[what] += 1
                if what not in self._failing:
                    self._failing.add(what)
                    log.warning(f"{what}_failed", node=self.node,
                                error=describe(exc))
            else:
                if what in self._failing:
                    self._failing.discard(what)
                    log.info(f"{what}_recovered", node=self.node)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def stop(self) -> None:
        """Stop beating and write a last heartbeat that says this node left: a node that
        stops cleanly is then not reported missing (bounded: a NATS that does not answer
        is skipped, and the node shows as missing)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bucket is not None and self._connection.connected:
            document = {**(self.last_document or {"node": self.node}), "time": time.time(),
                        "left": True}
            with contextlib.suppress(ClusterError, TimeoutError):
                await asyncio.wait_for(
                    self._bucket.put(self.node, json.dumps(document).encode()), 2.0)
