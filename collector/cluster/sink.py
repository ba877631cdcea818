"""The cluster's `Store` for ingest: `append` publishes, the rest is the local store's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from collector.cluster.publisher import Publisher, Settle
from collector.query import LogQuery
from collector.record import Record
from collector.store.base import Store, StoreStats


class PublishingStore:
    """Store-shaped: records go to the publisher; queries read the materialized copy."""

    def __init__(self, local: Store, publisher: Publisher) -> None:
        self._local = local
        self._publisher = publisher
        self.batch_seconds = local.batch_seconds

    async def open(self) -> int:
        """The local store's newest id."""
        return await self._local.open()

    def append(self, records: Sequence[Record]) -> bool:
        """Hand records to the publisher; False when its spool is full."""
        return self._publisher.append(records)

    def append_settled(self, records: Sequence[Record], settle: Settle) -> bool:
        """Hand records to the publisher; `settle(True)` once JetStream acknowledged them
        or the spool holds them, `settle(False)` if they were lost; False (and no call)
        when refused at once."""
        return self._publisher.append(records, settle)

    def uncommitted(self) -> Iterator[Record]:
        """The local store's uncommitted records."""
        return self._local.uncommitted()

    async def flush(self) -> None:
        """Flush the local store."""
        await self._local.flush()

    async def query(self, query: LogQuery) -> list[Record]:
        """Query the local (materialized) store."""
        return await self._local.query(query)

    async def close(self) -> None:
        """Close the local store."""
        await self._local.close()

    def stats(self) -> StoreStats:
        """The local store's figures."""
        return self._local.stats()
