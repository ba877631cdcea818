"""The silences in cluster mode: one key per silence in the NATS KV bucket
`alarms-silences`, shared by every node.

Matching happens on every delivery attempt of the alarms leader, so it reads memory only:
each node keeps a copy of the bucket, read whole by `open` and then fed by one watch task
(restarted with backoff when NATS stops answering it; until then the node matches with
the silences it last saw). A silence made on any node is a `create` of its key (its id is
unique, so create-if-absent never meets another's); expiring one is an `update` at the
revision read, read again and retried when another node wrote it meanwhile. Both return
once JetStream acknowledged the write (on a quorum of the bucket's replicas), so what the
API confirmed survives the loss of any node, and the leader sees it within a watch's
round trip.

As the file store does, at most MAX_SILENCES are kept and those ended more than
KEEP_ENDED ago are forgotten (deleted at the revision read) when one is added. A value
this version cannot read is logged (`silence_unreadable`), left out and never
overwritten. NATS's errors are StoreErrors here (the API answers 503 with the reason).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, replace

import structlog

from alarms.notification import Notification
from alarms.silence_store import KEEP_ENDED, MAX_SILENCES, ended_at
from alarms.silences import Silence, SilenceIndex
from collector.cluster.errors import ClusterError
from collector.cluster.kv import Bucket, Item, follow
from collector.errors import StoreError

log = structlog.get_logger("alarms.silences")

BUCKET = "alarms-silences"
# Compare-and-set rounds for one expiry (each conflict is another node's write of it).
CAS_TRIES = 8
# What a silence id may be to be looked up: a valid KV key (new_silence_id's are), so that
# an id from a URL that is not one is "no such silence", not a NATS error.
ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


def encode(silence: Silence) -> bytes:
    """A silence as its key's value (compact JSON)."""
    return json.dumps(asdict(silence), ensure_ascii=False, separators=(",", ":")).encode()


def decode(value: bytes) -> Silence:
    """Inverse of `encode`; StoreError when the value is not a silence this version reads."""
    try:
        doc = json.loads(value)
        if not isinstance(doc, dict):
            raise TypeError("expected a JSON object")
        return Silence.from_json(doc)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"unreadable silence {value[:80]!r}: {exc}") from None


@dataclass
class _Slot:
    """The copy of one key: the silence at a revision."""

    silence: Silence
    revision: int


class Mirror:
    """The node's copy of the bucket (pure: no I/O). `apply` takes what the watch or a
    write saw, keeping for each key the latest revision only."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self.unreadable = 0
        # Bumped on every change, so a matcher knows when to index the silences again.
        self.version = 0

    def __len__(self) -> int:
        """Silences in the copy."""
        return len(self._slots)

    def clear(self) -> None:
        """Forget everything (before reading the bucket again)."""
        self._slots.clear()
        self.version += 1

    def apply(self, item: Item) -> None:
        """One key's value or deletion at one revision, unless the copy has a later one.
        A deletion is dropped with its key: a later create of the same id cannot happen
        (ids are unique), so no marker is needed to keep an older value out."""
        slot = self._slots.get(item.key)
        if slot is not None and slot.revision >= item.revision:
            return
        self.version += 1
        if item.deleted:
            self._slots.pop(item.key, None)
            return
        try:
            silence = decode(item.value)
        except StoreError as exc:
            self._slots.pop(item.key, None)
            self.unreadable += 1
            log.error("silence_unreadable", key=item.key, revision=item.revision,
                      error=str(exc), note="left as it is; this node does not match it")
            return
        self._slots[item.key] = _Slot(silence, item.revision)

    def wrote(self, silence: Silence, revision: int) -> None:
        """A write of this node (before the watch shows it)."""
        slot = self._slots.get(silence.id)
        if slot is None or slot.revision < revision:
            self._slots[silence.id] = _Slot(silence, revision)
            self.version += 1

    def get(self, silence_id: str) -> tuple[Silence, int] | None:
        """A silence and its revision, if the copy has it."""
        slot = self._slots.get(silence_id)
        return (slot.silence, slot.revision) if slot is not None else None

    def silences(self) -> Iterator[Silence]:
        """Every silence in the copy."""
        return (slot.silence for slot in self._slots.values())

    def stale(self, now: float) -> list[tuple[str, int]]:
        """(key, revision) of the silences ended more than KEEP_ENDED before `now`."""
        return [(key, slot.revision) for key, slot in self._slots.items()
                if ended_at(slot.silence) <= now - KEEP_ENDED]


class KvSilences:
    """The silences on a KV bucket (see the module docstring); the same interface as
    alarms.silence_store.SilenceRegistry. `bucket` opens the bucket (e.g.
    `lambda: connection.bucket(BUCKET)`); it is called in `open`."""

    def __init__(self, bucket: Callable[[], Awaitable[Bucket]]) -> None:
        self._open_bucket = bucket
        self._bucket: Bucket | None = None
        self._mirror = Mirror()
        self._index: tuple[int, SilenceIndex] | None = None  # (mirror version, index)
        self._watch: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.watch_restarts = 0

    async def open(self) -> None:
        """Read the whole bucket into memory and start following it."""
        await self.close()
        try:
            bucket = await self._open_bucket()
            items = await bucket.items()
        except ClusterError as exc:
            raise StoreError(f"cannot read the silences from the cluster (NATS): {exc}"
                             ) from exc
        self._mirror.clear()
        for item in items:
            self._mirror.apply(item)
        self._bucket = bucket
        self._watch = asyncio.create_task(self._follow(bucket), name="silences-watch")

    async def close(self) -> None:
        """Stop following the bucket."""
        watch, self._watch = self._watch, None
        while watch is not None and not watch.done():
            # Again until it ends: nats-py's watch waits with asyncio.wait_for, which in
            # Python 3.11 swallows a cancellation that arrives as an update does.
            watch.cancel()
            await asyncio.wait({watch}, timeout=0.1)
        self._bucket = None

    async def _follow(self, bucket: Bucket) -> None:
        """The watch task: every change to the bucket into the copy."""
        def restarted() -> None:
            self.watch_restarts += 1

        await follow(bucket, self._mirror.apply, "silences", restarted)

    def _require(self) -> Bucket:
        if self._bucket is None:
            raise StoreError("the silences are not available: this node has not reached "
                             "the cluster (NATS) yet")
        return self._bucket

    # -- the interface of SilenceRegistry ---------------------------------------------

    def match(self, notification: Notification, now: float) -> Silence | None:
        """The active silence holding this notification back, if any (memory only)."""
        mirror = self._mirror
        if self._index is None or self._index[0] != mirror.version:
            self._index = (mirror.version, SilenceIndex(tuple(mirror.silences())))
        return self._index[1].first(notification, now)

    def listed(self, now: float, *, everything: bool = False) -> list[Silence]:
        """The active silences (or all kept), newest first."""
        self._require()
        chosen = [s for s in self._mirror.silences()
                  if s.active(now) or (everything and ended_at(s) > now - KEEP_ENDED)]
        return sorted(chosen, key=lambda s: s.created_at, reverse=True)

    async def add(self, silence: Silence, now: float) -> None:
        """Create the silence's key (acknowledged by JetStream before returning), after
        forgetting those ended more than KEEP_ENDED ago."""
        bucket = self._require()
        async with self._lock:
            try:
                for key, stale in self._mirror.stale(now):
                    if await bucket.delete(key, stale):
                        self._mirror.apply(Item(key, b"", stale + 1, deleted=True))
                if len(self._mirror) >= MAX_SILENCES:
                    raise StoreError(f"at most {MAX_SILENCES} silences are kept; "
                                     "expire some")
                revision = await bucket.create(silence.id, encode(silence))
            except ClusterError as exc:
                raise StoreError(f"the silence was not kept: the cluster (NATS) did not "
                                 f"confirm it ({exc})") from exc
            if revision is None:
                raise StoreError(f"a silence {silence.id} exists already")
            self._mirror.wrote(silence, revision)
        log.info("silence_created", id=silence.id, by=silence.created_by,
                 comment=silence.comment, ends_at=silence.ends_at, **silence.matchers())

    async def expire(self, silence_id: str, now: float, by: str) -> Silence | None:
        """End a silence now (an update at the revision read, retried when another node
        wrote it meanwhile); None when there is no such silence. Expiring one that has
        already ended changes nothing."""
        bucket = self._require()
        if ID.fullmatch(silence_id) is None:
            return None
        try:
            for _ in range(CAS_TRIES):
                item = await bucket.get(silence_id)
                if item is None:
                    return None
                self._mirror.apply(item)
                found = decode(item.value)
                if not found.active(now):
                    return found
                updated = replace(found, expired_at=now, expired_by=by,
                                  ends_at=min(found.ends_at, now))
                written = await bucket.update(silence_id, encode(updated), item.revision)
                if written is not None:
                    self._mirror.wrote(updated, written)
                    log.info("silence_expired", id=silence_id, by=by,
                             comment=found.comment, **found.matchers())
                    return updated
        except ClusterError as exc:
            raise StoreError(f"the silence was not expired: the cluster (NATS) did not "
                             f"confirm it ({exc})") from exc
        raise StoreError(f"the silence {silence_id} kept changing while being expired")
