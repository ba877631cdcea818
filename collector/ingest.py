"""From decoded lines to records, handed to the store and then to every consumer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from collector.decode.result import Lines
from collector.record import Record
from collector.requestlog import WorkerMap, parse_request_line
from collector.routerlog import router_columns
from collector.store.base import Store

log = structlog.get_logger("collector.ingest")


class Consumer(Protocol):
    """Something that sees every stored record: the live fan-out, the alarms engine."""

    def consume(self, records: Sequence[Record]) -> None:
        """Take records; must not block (schedule I/O instead)."""
        ...


# Told once whether records handed on are safe (True) or lost (False).
Settle = Callable[[bool], None]


@runtime_checkable
class SettlingStore(Protocol):
    """A store that takes records now and says later whether they are safe (the
    cluster's publisher: once JetStream acknowledged them or its spool holds them)."""

    def append_settled(self, records: Sequence[Record], settle: Settle) -> bool:
        """Take records, False if refused now; else `settle` is called once, later."""
        ...


class Ids:
    """Record ids: the microsecond of receipt, bumped past the last id when they collide.

    While fewer than a million lines a second arrive, ids never run ahead of the clock, so
    after a crash and restart the clock alone is past every id issued before it: ids never
    repeat, and a client resuming after its last id neither skips nor repeats a line.
    """

    def __init__(self, last: int = 0) -> None:
        self._last = last

    @property
    def last(self) -> int:
        """The most recent id handed out."""
        return self._last

    def take(self, count: int) -> int:
        """Reserve `count` consecutive ids; return the first."""
        first = max(self._last + 1, time.time_ns() // 1000)
        self._last = first + count - 1
        return first


@dataclass(frozen=True, slots=True)
class Origin:
    """Where lines came in: the listener's name, format and defaults."""

    listener: str
    format: str
    app: str
    source: str


class Ingest:
    """Builds records from decoded lines and hands them on; counts what it turns away."""

    def __init__(self, ids: Ids, store: Store, consumers: Sequence[Consumer] = ()) -> None:
        self._ids = ids
        self._store = store
        self._consumers = list(consumers)
        self._workers = WorkerMap()
        self._settling = store if isinstance(store, SettlingStore) else None
        self.consumer_errors = 0

    @property
    def settles(self) -> bool:
        """Whether accepted lines are safe only once settled (a cluster node): callers
        then pass `settle` to `accept` and count on its call, not on the return."""
        return self._settling is not None

    @property
    def last_id(self) -> int:
        """The newest id handed out so far."""
        return self._ids.last

    def add_consumer(self, consumer: Consumer) -> None:
        """Have `consumer` see every record from now on."""
        self._consumers.append(consumer)

    def accept(self, origin: Origin, host: str, decoded: Lines,
               settle: Settle | None = None) -> bool:
        """Turn one datagram's lines into records; False if the store's queue is full.
        With `settle` (see `settles`), it is called once the records are safe or lost."""
        count = len(decoded.markers) + len(decoded.lines)
        if not count:
            # A datagram can carry nothing to store yet (one part of a long line).
            if settle is not None:
                settle(True)
            return True
        records: list[Record] = []
        self._build(origin, host, decoded, self._ids.take(count), records)
        return self.publish(records, settle)

    def accept_many(self, origin: Origin, batch: Sequence[tuple[str, Lines]],
                    settle: Settle | None = None) -> tuple[bool, dict[int, Exception]]:
        """Turn several datagrams' lines (sender's host, decoded) into records stored and
        handed on together: one id reservation, one store append, one call per consumer.

        With `settle` (see `settles`), it is called once, later, when the records are
        safe or lost; only if some were handed on (never when `taken` is False or no
        datagram left a record). Returns (taken, failed): `failed` maps the index
        of each datagram whose records could not be built to the error, and that datagram
        alone is left out; `taken` is False when the store's queue refused the others
        (none of them is then stored). Records keep the batch's order and ids increase
        along it, as if each datagram had been accepted in turn.
        """
        total = 0
        for _, decoded in batch:
            total += len(decoded.markers) + len(decoded.lines)
        failed: dict[int, Exception] = {}
        if not total:
            return True, failed
        next_id = self._ids.take(total)
        records: list[Record] = []
        build = self._build
        for index, (host, decoded) in enumerate(batch):
            mark = len(records)
            try:
                next_id = build(origin, host, decoded, next_id, records)
            except Exception as exc:
                # This datagram's part is dropped; its ids stay unused (ids may have gaps).
                del records[mark:]
                next_id += len(decoded.markers) + len(decoded.lines)
                failed[index] = exc
        if not records:
            return True, failed
        return self.publish(records, settle), failed

    def _build(self, origin: Origin, host: str, decoded: Lines, next_id: int,
               records: list[Record]) -> int:
        """Append one datagram's records to `records`, ids from `next_id`; return the
        next unused id."""
        app = decoded.app or origin.app
        source = decoded.source or origin.source
        emitted, fmt = decoded.emitted_at, origin.format
        # Heroku's router speaks for the requests of every dyno (a drain's or a syslog
        # relay's `router` source): its lines fill the request columns too.
        router = source == "router"
        append = records.append
        for text in decoded.markers:
            append(Record(next_id, emitted, app, source, host, fmt, text, "marker"))
            next_id += 1
        for text in decoded.lines:
            fields = parse_request_line(text) if "[pid: " in text else None
            if fields is not None:
                method, path, status, msecs, size, pid = fields
                append(Record(next_id, emitted, app, source, host, fmt, text, "log",
                              method, path, status, msecs, size, pid,
                              self._workers.worker(app, source, pid)))
            elif router and (columns := router_columns(text)) is not None:
                append(Record(next_id, emitted, app, source, host, fmt, text, "log",
                              *columns))
            else:
                if "uWSGI worker" in text:
                    self._workers.learn(app, source, text)
                append(Record(next_id, emitted, app, source, host, fmt, text))
            next_id += 1
        return next_id

    def publish(self, records: list[Record], settle: Settle | None = None) -> bool:
        """Store records and hand them to the consumers (also for collector-made records);
        `settle` as for `accept`."""
        if settle is not None and self._settling is not None:
            taken = self._settling.append_settled(records, settle)
        else:
            taken = self._store.append(records)
        if not taken:
            return False
        for consumer in self._consumers:
            try:
                consumer.consume(records)
            except Exception:
                # A consumer's bug must not stop ingest; it is logged and counted here, once.
                self.consumer_errors += 1
                log.exception("consumer_failed", consumer=type(consumer).__name__)
        return True

    def next_ids(self, count: int) -> int:
        """Reserve ids for records the collector itself writes (alarms, markers)."""
        return self._ids.take(count)
