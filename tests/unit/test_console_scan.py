"""collector.api.scan: every matching record once, committed or on its way, up to a cap."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from collector.api.scan import PAGE_SIZE, scan
from collector.query import LogQuery, matcher
from collector.record import Record

BASE = 1_800_000_000_000_000


def record(n: int, source: str = "web.1") -> Record:
    """A line received n microseconds after BASE."""
    return Record(id=BASE + n, emitted_at=None, app="shop", source=source, host="h",
                  format="socket", line=f"line {n}")


@dataclass
class ListStore:
    """Committed records in a list, and a list of records still on their way; the first
    query commits one pending record, as the writer would meanwhile."""

    committed: list[Record]
    pending: list[Record] = field(default_factory=list)
    queries: int = 0

    def uncommitted(self) -> Iterator[Record]:
        """The pending records."""
        return iter(list(self.pending))

    async def query(self, query: LogQuery) -> list[Record]:
        """Matching committed records after `after`, ascending, up to `limit`."""
        self.queries += 1
        if self.pending:
            self.committed.append(self.pending.pop(0))
        match = matcher(query)
        after = query.after or 0
        return [r for r in self.committed if r.id > after and match(r)][:query.limit]


async def collect(store: ListStore, query: LogQuery, cap: int) -> list[int]:
    """The ids a scan yields, in order."""
    return [r.id - BASE async for page in scan(store, query, cap) for r in page]


async def test_scan_yields_committed_then_pending_each_once() -> None:
    """A record committed during the scan (it was pending when the scan began) is
    yielded once; the rest of the pending records follow, in id order, filtered."""
    store = ListStore([record(n) for n in range(5)],
                      [record(5), record(6, "web.2"), record(7)])
    assert await collect(store, LogQuery(source="web.1"), 100) == [0, 1, 2, 3, 4, 5, 7]


async def test_scan_pages_through_and_stops_at_the_cap() -> None:
    """More than a page is read page by page; a cap stops the walk where it says."""
    store = ListStore([record(n) for n in range(2 * PAGE_SIZE + 10)])
    assert len(await collect(store, LogQuery(), 10**6)) == 2 * PAGE_SIZE + 10
    assert store.queries == 3
    assert await collect(store, LogQuery(), 1500) == list(range(1500))


async def test_scan_starts_at_since() -> None:
    """`since` starts the walk at that microsecond (inclusive)."""
    store = ListStore([record(n) for n in range(10)])
    since = (BASE + 7) / 1e6
    low = int(since * 1e6)
    assert await collect(store, LogQuery(since=since), 100) == [
        n for n in range(10) if BASE + n >= low]
    assert store.queries == 1
