"""The NATS KV boundary: a replicated bucket with compare-and-set, every nats-py exception
a ClusterError here (as collector.cluster.connection does for streams).

Used for what the cluster shares beside the log: the alarms lease and position, the
replicated outbox, the nodes' heartbeats. Every call waits at most `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from collector.cluster.errors import ClusterError, describe

NATS_ERRORS = (nats.errors.Error, asyncio.TimeoutError, OSError)
TIMEOUT = 5.0
# JetStream's error codes for "the subject's last sequence is not the one expected".
WRONG_LAST_SEQUENCE = (10071, 10164)
# A watch that failed is started again after this, doubling up to the maximum.
WATCH_BACKOFF = 0.5
WATCH_BACKOFF_MAX = 10.0
# A replicated bucket's stream has no leader for a moment while one is elected (a bucket
# just made, a server restarting): NATS answers "no responders" and nothing was stored,
# so a write is sent again after this, within its timeout.
LEADERLESS_RETRY = 0.1

T = TypeVar("T")

log = structlog.get_logger("collector.cluster.kv")


@dataclass(frozen=True)
class Item:
    """One key's value at one revision (`deleted` for a delete or purge marker, whose
    value is empty)."""

    key: str
    value: bytes
    revision: int
    deleted: bool = False


def _error(what: str, exc: BaseException) -> ClusterError:
    return ClusterError(f"{what}: {describe(exc)}")


class Bucket:
    """One KV bucket. `create` and `update` are the compare-and-set steps: they return
    None when another writer got there first, and raise ClusterError only when NATS did
    not answer."""

    def __init__(self, kv: KeyValue, name: str, timeout: float = TIMEOUT) -> None:
        self._kv = kv
        self.name = name
        self._timeout = timeout

    async def _write(self, send: Callable[[], Awaitable[T]]) -> T:
        """`send()`'s result within the timeout, sent again while the stream has no
        leader; nats-py's exceptions as they come (the caller maps them)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            try:
                return await asyncio.wait_for(send(), max(0.001, deadline - loop.time()))
            except nats.js.errors.NoStreamResponseError:
                if loop.time() + LEADERLESS_RETRY >= deadline:
                    raise
                await asyncio.sleep(LEADERLESS_RETRY)

    async def get(self, key: str) -> Item | None:
        """The key's latest value, or None when it is absent or deleted."""
        try:
            entry = await asyncio.wait_for(self._kv.get(key), self._timeout)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except NATS_ERRORS as exc:
            raise _error(f"cannot read {self.name}/{key}", exc) from None
        return Item(key, entry.value or b"", int(entry.revision or 0))

    async def create(self, key: str, value: bytes) -> int | None:
        """Write the key only if it is absent (or deleted); its revision, or None when it
        exists."""
        try:
            return int(await self._write(lambda: self._kv.create(key, value)))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except NATS_ERRORS as exc:
            raise _error(f"cannot create {self.name}/{key}", exc) from None

    async def update(self, key: str, value: bytes, revision: int) -> int | None:
        """Write the key only if its latest revision is `revision`; the new revision, or
        None when someone else wrote it since."""
        try:
            return int(await self._write(lambda: self._kv.update(key, value, last=revision)))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None
        except NATS_ERRORS as exc:
            raise _error(f"cannot update {self.name}/{key}", exc) from None

    async def put(self, key: str, value: bytes) -> int:
        """Write the key whatever it holds; its revision."""
        try:
            return int(await self._write(lambda: self._kv.put(key, value)))
        except NATS_ERRORS as exc:
            raise _error(f"cannot write {self.name}/{key}", exc) from None

    async def delete(self, key: str, revision: int | None = None) -> bool:
        """Delete the key (only at `revision`, when given); False when someone else wrote
        it since `revision`."""
        try:
            await self._write(lambda: self._kv.delete(key, last=revision))
        except nats.js.errors.APIError as exc:
            # nats-py maps a wrong last sequence to KeyWrongLastSequenceError for updates
            # only; a delete at a stale revision comes back as the plain API error.
            if exc.err_code in WRONG_LAST_SEQUENCE:
                return False
            raise _error(f"cannot delete {self.name}/{key}", exc) from None
        except NATS_ERRORS as exc:
            raise _error(f"cannot delete {self.name}/{key}", exc) from None
        return True

    async def items(self) -> list[Item]:
        """Every key's latest value (deleted keys left out), read in one pass."""
        return [item async for item in self.watch(live=False) if not item.deleted]

    async def watch(self, *, live: bool = True) -> AsyncIterator[Item]:
        """Every key's latest value, then (when `live`) each change as it happens,
        deletions included; ends with ClusterError when NATS does not answer."""
        try:
            status = await asyncio.wait_for(self._kv.status(), self._timeout)
            watcher = await asyncio.wait_for(self._kv.watchall(), self._timeout)
        except NATS_ERRORS as exc:
            raise _error(f"cannot watch {self.name}", exc) from None
        # nats-py's "initial values read" marker (None) also comes before any value when
        # the new consumer's info does not count its pending messages yet, as happens
        # with a replicated bucket: items() then found an R3 bucket empty now and then.
        # So the marker counts only for a bucket that was empty; otherwise the initial
        # read ends with the value after which nothing was pending (its delta is 0).
        empty = status.values == 0
        try:
            caught_up = False
            while True:
                try:
                    wait = 3600.0 if caught_up else self._timeout
                    entry = await watcher.updates(timeout=wait)  # type: ignore[no-untyped-call]
                except NATS_ERRORS as exc:
                    if caught_up:
                        continue
                    raise _error(f"cannot watch {self.name}", exc) from None
                if entry is None:
                    if empty and not caught_up:
                        if not live:
                            return
                        caught_up = True
                    continue
                yield Item(entry.key, entry.value or b"", int(entry.revision or 0),
                           deleted=entry.operation in (KV_DEL, KV_PURGE))
                if not caught_up and not entry.delta:
                    if not live:
                        return
                    caught_up = True
        finally:
            with contextlib.suppress(*NATS_ERRORS):
                await asyncio.wait_for(watcher.stop(),  # type: ignore[no-untyped-call]
                                       self._timeout)


async def follow(bucket: Bucket, apply: Callable[[Item], None], name: str,
                 restarted: Callable[[], None]) -> None:
    """Feed every change of `bucket` to `apply`, forever: a watch that ends or fails is
    started again after a backoff (WATCH_BACKOFF doubling to WATCH_BACKOFF_MAX, reset by
    the next change), logged as `{name}_watch_failed` and told to `restarted`. A restarted
    watch begins with every key's latest value, deletions included, so nothing in between
    is missed. Run it as a task and cancel it to stop."""
    delay = WATCH_BACKOFF
    while True:
        try:
            async for item in bucket.watch():
                apply(item)
                delay = WATCH_BACKOFF
            error = "the watch ended"
        except ClusterError as exc:
            error = str(exc)
        except Exception as exc:
            # The watch task's one catch point for a bug (in `apply`): logged with its
            # traceback, and the watch goes on after the pause.
            log.exception(f"{name}_watch_crashed", bucket=bucket.name)
            error = f"{type(exc).__name__}: {exc}"
        restarted()
        log.warning(f"{name}_watch_failed", bucket=bucket.name, error=error, retry_in=delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, WATCH_BACKOFF_MAX)


async def open_bucket(js: JetStreamContext, name: str, replicas: int, *,
                      ttl: float | None = None, history: int = 1,
                      within: float = 30.0) -> Bucket:
    """The bucket `name`, created with these settings when absent, once its stream has a
    leader; retried while a fresh NATS cluster elects its meta leader or the stream's,
    then ClusterError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    kv: KeyValue | None = None
    while True:
        try:
            if kv is None:
                try:
                    kv = await js.key_value(name)
                except nats.js.errors.BucketNotFoundError:
                    kv = await js.create_key_value(KeyValueConfig(
                        bucket=name, history=history, ttl=ttl, replicas=replicas,
                        storage=StorageType.FILE))
            # A bucket just made answers its first writes "no responders" until its
            # stream has elected a leader; a bucket handed out has one.
            info = await js.stream_info(f"KV_{name}")
            if info.cluster is None or info.cluster.leader:
                return Bucket(kv, name)
            if loop.time() > deadline:
                raise ClusterError(f"cannot set up bucket {name}: its stream has no leader")
            await asyncio.sleep(LEADERLESS_RETRY)
        except NATS_ERRORS as exc:
            if loop.time() > deadline:
                raise _error(f"cannot set up bucket {name}", exc) from None
            await asyncio.sleep(0.5)
