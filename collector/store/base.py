"""The storage interface: what the server needs of any backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from collector.metrics import Histogram
from collector.query import LogQuery
from collector.record import Record


@dataclass(frozen=True)
class StoreStats:
    """Figures for /metrics. `write_failures` counts failed commit attempts,
    `writes_failing` holds from a failure to the next commit, `last_write_failure` is the
    Unix time of the latest failure (0: none) and `writer_restarts` counts attempts to
    start a new writer after one died."""

    queued: int
    appended: int
    committed: int
    dropped: int
    batches: int
    partitions: int
    bytes_on_disk: int
    write_failures: int = 0
    writes_failing: bool = False
    last_write_failure: float = 0.0
    writer_restarts: int = 0


class Store(Protocol):
    """Append-only log storage with group commit.

    `append` never blocks the event loop: it queues for a writer and returns False when the
    queue is full (the caller counts those lines as dropped). Committed batches survive a
    `kill -9`.
    """

    batch_seconds: Histogram

    async def open(self) -> int:
        """Open or create the store; return the highest committed record id (0 if none)."""
        ...

    def append(self, records: Sequence[Record]) -> bool:
        """Queue records for the next batch; False when the queue is full."""
        ...

    def uncommitted(self) -> Iterator[Record]:
        """Records appended but not yet committed, in id order (a follower reads the store,
        then these, and so misses nothing that is still on its way to disk)."""
        ...

    async def flush(self) -> None:
        """Return once every record appended so far is committed."""
        ...

    async def query(self, query: LogQuery) -> list[Record]:
        """Records matching `query` (see LogQuery for the order)."""
        ...

    async def close(self) -> None:
        """Commit what is queued, then stop the writer, within a bounded time; what could
        not be committed by then is logged as lost, with its count."""
        ...

    def stats(self) -> StoreStats:
        """Counters for /metrics."""
        ...
