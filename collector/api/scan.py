"""Every record matching a query, committed or not, read a page at a time up to a cap.

The volume chart and the sources page count records rather than list them: they walk
the store in id order (as a follower catching up does) and fold each page as it comes,
so a long range costs time, not memory. The walk stops at `cap` records and says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import replace
from typing import Protocol

from collector.query import LogQuery, matcher
from collector.record import Record

PAGE_SIZE = 1000


class Readable(Protocol):
    """What a scan reads: the store's committed and uncommitted records."""

    def uncommitted(self) -> Iterator[Record]:
        """Records on their way to disk, in id order."""
        ...

    async def query(self, query: LogQuery) -> list[Record]:
        """Committed records matching `query`."""
        ...


async def scan(store: Readable, query: LogQuery, cap: int
               ) -> AsyncIterator[Sequence[Record]]:
    """Pages of the records matching `query` (its `after` and `limit` are ignored), in
    id order, each once, at most `cap` in all."""
    match = matcher(query)
    # Taken before the first read: a record committed meanwhile is found by the reads,
    # one still on its way is in `pending`; one found in both is sent once, by id.
    pending = {r.id: r for r in store.uncommitted() if match(r)}
    cursor = int(query.since * 1e6) - 1 if query.since is not None else 0
    left = cap
    while left > 0:
        want = min(PAGE_SIZE, left)
        page = await store.query(replace(query, after=max(cursor, 0), limit=want))
        for record in page:
            pending.pop(record.id, None)
        if page:
            left -= len(page)
            cursor = page[-1].id
            yield page
        if len(page) < want:
            break
    rest = sorted((r for r in pending.values() if r.id > cursor), key=lambda r: r.id)
    if rest and left > 0:
        yield rest[:left]


def capped(seen: int, cap: int) -> bool:
    """Whether a scan that folded `seen` records stopped at its cap."""
    return seen >= cap
