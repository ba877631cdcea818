"""The alarms leader lease: one node at a time evaluates rules and delivers.

A KV key (`alarms-leader` in the bucket `cluster`, whose TTL is the lease's) holds the
leader's node name and boot id. A node takes it with `create` (the key is absent: no
leader, or the last one stopped renewing and the key expired), and keeps it with `update`
at the revision it last wrote, every `RENEW_SECONDS`. A compare-and-set that fails means
someone else holds it; NATS not answering for `hold` seconds (less than the TTL, so the
old leader has stopped before the key can expire and another node take it) means this
node can no longer know, and it steps down.

`LeaseState` is the decision, fed with times and outcomes (unit-tested by feeding values);
`Lease` is the loop that does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from collector.cluster.errors import ClusterError
from collector.cluster.kv import Bucket

log = structlog.get_logger("collector.cluster")

BUCKET = "cluster"
KEY = "alarms-leader"
TTL_SECONDS = 5.0
RENEW_SECONDS = 1.0


@dataclass
class LeaseState:
    """Whether this node leads, from what the last attempts answered (pure: no I/O)."""

    hold: float = TTL_SECONDS - RENEW_SECONDS
    leader: bool = False
    revision: int | None = None
    renewed_at: float = float("-inf")
    changes: int = 0

    def expired(self, now: float) -> bool:
        """Whether a leader has gone too long without a renewal to be sure it still leads."""
        return self.leader and now - self.renewed_at >= self.hold

    def deadline(self, now: float) -> float:
        """Seconds the next attempt may take before the lease would have to be given up."""
        return max(0.05, self.renewed_at + self.hold - now) if self.leader else TTL_SECONDS

    def won(self, now: float, revision: int) -> bool:
        """A `create` or `update` succeeded at `revision`; whether leadership changed."""
        changed = not self.leader
        self.leader, self.revision, self.renewed_at = True, revision, now
        if changed:
            self.changes += 1
        return changed

    def refused(self) -> bool:
        """A compare-and-set found another writer: not (or no longer) the leader."""
        return self.resign()

    def unanswered(self, now: float) -> bool:
        """NATS did not answer; leadership is lost once it has not been renewed for `hold`
        seconds. Whether leadership changed."""
        return self.resign() if self.expired(now) else False

    def resign(self) -> bool:
        """Stop leading (refused, expired, or shutting down); whether that is a change."""
        changed = self.leader
        self.leader, self.revision = False, None
        if changed:
            self.changes += 1
        return changed


def lease_value(node: str, boot: str) -> bytes:
    """What the key holds: who leads (for operators and `collector cluster status`)."""
    return json.dumps({"node": node, "boot": boot}, separators=(",", ":")).encode()


Listener = Callable[[bool], Awaitable[None]]


class Lease:
    """Takes and renews the lease in the background; calls `on_change(leader)` (awaited, in
    the lease's task) on every change, and sets `changed` so others can wait."""

    def __init__(self, bucket: Callable[[], Awaitable[Bucket]], node: str, boot: str,
                 on_change: Listener, *, clock: Callable[[], float] = time.monotonic,
                 renew: float = RENEW_SECONDS, hold: float = TTL_SECONDS - RENEW_SECONDS
                 ) -> None:
        self._open_bucket = bucket
        self._bucket: Bucket | None = None
        self._value = lease_value(node, boot)
        self._on_change = on_change
        self._clock = clock
        self._renew = renew
        self.state = LeaseState(hold=hold)
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        """Whether this node holds the lease right now."""
        return self.state.leader

    async def start(self) -> None:
        """Try once now (so a lone node leads as soon as it is up), then keep trying."""
        await self._step()
        self._task = asyncio.create_task(self._run(), name="alarms-lease")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._renew)
            try:
                await self._step()
            except Exception:
                # The lease task's one catch point: a bug in a listener is logged, and the
                # lease goes on (stepping down if it cannot renew).
                log.exception("alarms_lease_failed")

    async def _step(self) -> None:
        state = self.state
        now = self._clock()
        try:
            async with asyncio.timeout(state.deadline(now)):
                bucket = await self._open()
                if state.leader and state.revision is not None:
                    revision = await bucket.update(KEY, self._value, state.revision)
                else:
                    revision = await bucket.create(KEY, self._value)
        except (ClusterError, TimeoutError) as exc:
            if state.unanswered(self._clock()):
                log.warning("alarms_leader_lost", reason="no answer from NATS",
                            error=str(exc) or type(exc).__name__)
                await self._changed()
            return
        if revision is None:
            if state.refused():
                log.warning("alarms_leader_lost", reason="another node holds the lease")
                await self._changed()
            return
        if state.won(now, revision):
            log.info("alarms_leader_won", revision=revision)
            await self._changed()

    async def _open(self) -> Bucket:
        if self._bucket is None:
            self._bucket = await self._open_bucket()
        return self._bucket

    async def _changed(self) -> None:
        self.changed.set()
        self.changed.clear()
        await self._on_change(self.state.leader)

    async def stop(self) -> None:
        """Stop renewing; a leader gives the lease up so the next one need not wait out the
        TTL."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        state = self.state
        if state.leader and state.revision is not None and self._bucket is not None:
            with contextlib.suppress(ClusterError):
                await self._bucket.delete(KEY, state.revision)
        if state.resign():
            await self._on_change(False)
