"""Decoded datagrams handed to ingest, and counted: shared by the in-process listener
(collector/listen/udp.py) and the main side of K receiver processes (receivers.py).

A wake-up's datagrams go to ingest as one batch. Single-node mode counts each datagram
accepted when the store took its lines; a cluster node counts the batch's datagrams
accepted when its lines are settled (acknowledged by JetStream or held by the spool),
all at once, by one settle per batch.
"""

from __future__ import annotations

import operator

import structlog

from collector.config.model import ListenerConfig
from collector.decode.result import Lines
from collector.ingest import Ingest, Origin
from collector.listen.stats import ListenerStats

log = structlog.get_logger("collector.listen")

_RESULT = operator.itemgetter(1)
_LINES = operator.attrgetter("lines")
_ESCAPED = operator.attrgetter("escaped")
_LOST = operator.attrgetter("lost")


class Settlement:
    """What a cluster node's batch counts once settled: plain values, not the decoded
    lines, for what waits for an ack, so that the garbage collector has no objects to
    walk."""

    __slots__ = ("_handoff", "datagrams", "escaped", "lines", "lost")

    def __init__(self, handoff: Handoff) -> None:
        self._handoff = handoff
        self.datagrams = 0
        self.lines = 0
        self.escaped = 0
        # (app, source, lines the sender says were lost), for datagrams that tell of any.
        self.lost: list[tuple[str | None, str | None, int]] = []

    def add(self, result: Lines) -> None:
        """Count one datagram of the batch."""
        self.datagrams += 1
        self.lines += len(result.lines)
        self.escaped += result.escaped
        if result.lost:
            self.lost.append((result.app, result.source, result.lost))

    def settle(self, ok: bool) -> None:
        """The batch's records are safe (True) or lost: count its datagrams accepted, or
        dropped as `publish_lost`."""
        self._handoff.settled(self, ok)


class Handoff:
    """Hands a listener's decoded datagrams to ingest and counts them in its stats."""

    def __init__(self, config: ListenerConfig, origin: Origin, ingest: Ingest,
                 stats: ListenerStats) -> None:
        self.config = config
        self.origin = origin
        self._ingest = ingest
        self._stats = stats

    def reconfigure(self, config: ListenerConfig, origin: Origin) -> None:
        """Count and tag with a reloaded listener's settings from now on."""
        self.config = config
        self.origin = origin

    def batch(self, decoded: list[tuple[str, Lines]]) -> None:
        """Store the datagrams' (host, lines) at once. Single-node mode: each is accepted
        when the store took them; a cluster node: all of them once the batch is settled.
        Dropped as `store_backlog` when the store (or publisher) refused them."""
        stats = self._stats
        settlement = Settlement(self) if self._ingest.settles else None
        try:
            taken, failed = self._ingest.accept_many(
                self.origin, decoded, None if settlement is None else settlement.settle)
        except Exception:
            stats.dropped["internal_error"] += len(decoded)
            log.exception("datagrams_failed", listener=self.config.name, count=len(decoded))
            return
        for index, exc in failed.items():
            stats.dropped["internal_error"] += 1
            log.error("datagram_failed", listener=self.config.name, peer=decoded[index][0],
                      exc_info=exc)
        kept = (list(map(_RESULT, decoded)) if not failed else
                [result for index, (_, result) in enumerate(decoded) if index not in failed])
        if taken:
            handed_on = any(result.lines or result.markers for result in kept)
        else:
            # What had lines or markers to store is dropped; a datagram that carried
            # nothing to store yet (one part of a long line) is accepted all the same.
            handed_on = False
            empty: list[Lines] = []
            for result in kept:
                if result.lines or result.markers:
                    stats.dropped["store_backlog"] += 1
                    stats.lines_dropped["store_backlog"] += len(result.lines)
                else:
                    empty.append(result)
            kept = empty
        if settlement is None:
            self._count_accepted(kept)
            return
        for result in kept:
            settlement.add(result)
        if not handed_on and settlement.datagrams:
            # Nothing of the batch went to the publisher: its datagrams are accepted now,
            # as no settle will come.
            settlement.settle(True)

    def _count_accepted(self, results: list[Lines]) -> None:
        """Count datagrams accepted, in C-level passes over the batch."""
        stats = self._stats
        stats.datagrams_accepted += len(results)
        stats.lines += sum(map(len, map(_LINES, results)))
        stats.escaped += sum(map(_ESCAPED, results))
        for result in filter(_LOST, results):
            stats.count_lost(result.app or self.config.app,
                             result.source or self.config.source, result.lost)

    def settled(self, settlement: Settlement, ok: bool) -> None:
        """Count a cluster batch's datagrams accepted, its lines safe, or dropped as
        `publish_lost`."""
        stats = self._stats
        if not ok:
            stats.dropped["publish_lost"] += settlement.datagrams
            stats.lines_dropped["publish_lost"] += settlement.lines
            return
        stats.datagrams_accepted += settlement.datagrams
        stats.lines += settlement.lines
        stats.escaped += settlement.escaped
        for app, source, lost in settlement.lost:
            stats.count_lost(app or self.config.app, source or self.config.source, lost)
