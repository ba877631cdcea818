"""The silences of a running collector: held in memory for matching, kept in a file.

Matching happens on every delivery attempt, so it reads memory only; adding or expiring a
silence rewrites the file (`DATA_DIR/silences.json`: written to a temporary file, fsynced,
renamed over the old one, on a worker thread) before it answers, so what the API
confirmed survives a crash. This is the single-node store; in cluster mode the silences
live in a KV bucket shared by the nodes (alarms.silence_kv), behind the same `Silences`
interface.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import structlog

from alarms.notification import Notification
from alarms.silences import Silence, SilenceIndex
from collector.errors import StoreError

log = structlog.get_logger("alarms.silences")

# Expired silences are listed (`--all`) for this long after they end, then forgotten.
KEEP_ENDED = 7 * 86400.0
MAX_SILENCES = 10_000


class Silences(Protocol):
    """What the API and the dispatcher's silencer use: SilenceRegistry (one node, a file)
    or alarms.silence_kv.KvSilences (cluster mode, a KV bucket)."""

    def match(self, notification: Notification, now: float) -> Silence | None:
        """The active silence holding this notification back, if any."""
        ...

    def listed(self, now: float, *, everything: bool = False) -> list[Silence]:
        """The active silences (or all kept), newest first."""
        ...

    async def add(self, silence: Silence, now: float) -> None:
        """Keep a new silence durably before returning."""
        ...

    async def expire(self, silence_id: str, now: float, by: str) -> Silence | None:
        """End a silence now; None when there is no such silence."""
        ...


class SilenceFile(Protocol):
    """Where the silences are kept."""

    async def load(self) -> list[Silence]:
        """Every silence kept, or none when there is no file yet."""
        ...

    async def save(self, silences: Sequence[Silence]) -> None:
        """Replace what is kept with `silences`, durably, before returning."""
        ...


class JsonSilenceFile:
    """The silences as one JSON document (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    async def load(self) -> list[Silence]:
        """Read the file; a missing one is no silences, an unreadable one a StoreError."""
        def read() -> list[Silence]:
            try:
                text = self._path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise StoreError(f"cannot read the silences {self._path}: {exc}") from exc
            try:
                return [Silence.from_json(doc) for doc in json.loads(text)["silences"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"the silences file {self._path} is damaged: {exc}"
                                 ) from exc

        return await asyncio.to_thread(read)

    async def save(self, silences: Sequence[Silence]) -> None:
        """Write a temporary file, fsync it, rename it over the old one, fsync the dir."""
        text = json.dumps({"silences": [s.to_json(0.0) for s in silences]},
                          ensure_ascii=False)

        def write() -> None:
            temporary = self._path.with_suffix(".json.tmp")
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with open(temporary, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, self._path)
                directory = os.open(self._path.parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
            except OSError as exc:
                raise StoreError(f"cannot write the silences {self._path}: {exc}") from exc

        await asyncio.to_thread(write)


class SilenceRegistry:
    """The silences in memory, written through to a SilenceFile."""

    def __init__(self, store: SilenceFile) -> None:
        self._store = store
        self._silences: list[Silence] = []
        self._lock = asyncio.Lock()
        self._index: SilenceIndex | None = None
        self._indexed: list[Silence] | None = None

    async def open(self) -> None:
        """Load what the file holds."""
        self._silences = await self._store.load()

    def match(self, notification: Notification, now: float) -> Silence | None:
        """The active silence holding this notification back, if any."""
        # add and expire put a new list in place and never change one: the same list
        # means the same silences, so their index is kept without comparing them.
        if self._index is None or self._indexed is not self._silences:
            self._index = SilenceIndex(tuple(self._silences))
            self._indexed = self._silences
        return self._index.first(notification, now)

    def listed(self, now: float, *, everything: bool = False) -> list[Silence]:
        """The active silences (or all kept), newest first."""
        chosen = [s for s in self._silences if everything or s.active(now)]
        return sorted(chosen, key=lambda s: s.created_at, reverse=True)

    async def add(self, silence: Silence, now: float) -> None:
        """Keep a new silence (durably), forgetting those ended more than KEEP_ENDED ago."""
        async with self._lock:
            kept = [s for s in self._silences if ended_at(s) > now - KEEP_ENDED]
            if len(kept) >= MAX_SILENCES:
                raise StoreError(f"at most {MAX_SILENCES} silences are kept; expire some")
            await self._store.save([*kept, silence])
            self._silences = [*kept, silence]
        log.info("silence_created", id=silence.id, by=silence.created_by,
                 comment=silence.comment, ends_at=silence.ends_at, **silence.matchers())

    async def expire(self, silence_id: str, now: float, by: str) -> Silence | None:
        """End a silence now (durably); None when there is no such silence. Expiring one
        that has already ended changes nothing."""
        async with self._lock:
            found = next((s for s in self._silences if s.id == silence_id), None)
            if found is None or not found.active(now):
                return found
            updated = Silence(**{**found.__dict__, "expired_at": now, "expired_by": by,
                                 "ends_at": min(found.ends_at, now)})
            silences = [updated if s.id == silence_id else s for s in self._silences]
            await self._store.save(silences)
            self._silences = silences
        log.info("silence_expired", id=silence_id, by=by, comment=found.comment,
                 **found.matchers())
        return updated


def ended_at(silence: Silence) -> float:
    """When a silence stopped (or will stop) holding: its end, or when it was expired."""
    return silence.ends_at if silence.expired_at is None else silence.expired_at
