"""Log queries: the filters of `GET /v1/logs`, for the store and for live followers alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.record import Record
from collector.regex import compile_regex


@dataclass(frozen=True)
class LogQuery:
    """Filters of `GET /v1/logs`.

    With `after`, records with a greater id in ascending order (resuming a stream);
    otherwise the newest `limit` records that match, oldest first. `regex` is RE2 syntax,
    which runs in linear time whatever a caller sends. `status` is an exact code and
    `status_class` a class (`5` for 5xx).
    """

    app: str | None = None
    source: str | None = None
    since: float | None = None
    until: float | None = None
    regex: str | None = None
    status: int | None = None
    # A status class by its hundreds digit (5 for 5xx); lines without a status never match.
    status_class: int | None = None
    after: int | None = None
    limit: int = 100


def matcher(query: LogQuery) -> Callable[[Record], bool]:
    """A predicate applying the query's filters (not `after`/`limit`) to one record."""
    app, source, status = query.app, query.source, query.status
    status_class = query.status_class
    low = int(query.since * 1e6) if query.since is not None else None
    high = int(query.until * 1e6) if query.until is not None else None
    search = compile_regex(query.regex).search if query.regex is not None else None

    def match(record: Record) -> bool:
        return ((app is None or record.app == app)
                and (source is None or record.source == source)
                and (status is None or record.status == status)
                and (status_class is None
                     or (record.status is not None and record.status // 100 == status_class))
                and (low is None or record.id >= low)
                and (high is None or record.id < high)
                and (search is None or search(record.line) is not None))

    return match
