"""Decoded datagrams handed to ingest, and counted: shared by the in-process listener
(collector/listen/udp.py) and the main side of K receiver processes (receivers.py).

Single-node mode takes a batch at once and counts each datagram accepted when the store
took its lines; a cluster node hands each datagram on alone and counts it accepted when
its lines are settled (acknowledged by JetStream or held by the spool).
"""

from __future__ import annotations

from functools import partial

import structlog

from collector.config.model import ListenerConfig
from collector.decode.result import Lines
from collector.ingest import Ingest, Origin
from collector.listen.stats import ListenerStats

log = structlog.get_logger("collector.listen")

# (lines, escaped, app, source, lost): plain values, not the decoded lines, for what waits
# for an ack, so that the garbage collector has no objects to walk.
Pending = tuple[int, int, str | None, str | None, int]


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

    @property
    def settles(self) -> bool:
        """Whether each datagram goes on alone and counts once settled (a cluster node)."""
        return self._ingest.settles

    def batch(self, decoded: list[tuple[str, Lines]]) -> None:
        """Single-node mode: store the datagrams' (host, lines) at once; each is accepted
        when the store took them, dropped as `store_backlog` when it refused them."""
        stats = self._stats
        try:
            taken, failed = self._ingest.accept_many(self.origin, decoded)
        except Exception:
            stats.dropped["internal_error"] += len(decoded)
            log.exception("datagrams_failed", listener=self.config.name, count=len(decoded))
            return
        for index, exc in failed.items():
            stats.dropped["internal_error"] += 1
            log.error("datagram_failed", listener=self.config.name, peer=decoded[index][0],
                      exc_info=exc)
        for index, (_, result) in enumerate(decoded):
            if failed and index in failed:
                continue
            count = len(result.lines)
            if not taken and (count or result.markers):
                stats.dropped["store_backlog"] += 1
                stats.lines_dropped["store_backlog"] += count
                continue
            stats.datagrams_accepted += 1
            stats.lines += count
            stats.escaped += result.escaped
            if result.lost:
                stats.count_lost(result.app or self.config.app,
                                 result.source or self.config.source, result.lost)

    def one_settled(self, host: str, result: Lines) -> None:
        """Cluster mode: hand one datagram on; it counts as accepted once its lines are
        acknowledged by JetStream or held by the spool, not when taken."""
        pending: Pending = (len(result.lines), result.escaped, result.app, result.source,
                            result.lost)
        if not self._ingest.accept(self.origin, host, result, partial(self.settled, pending)):
            self._stats.dropped["store_backlog"] += 1
            self._stats.lines_dropped["store_backlog"] += pending[0]

    def settled(self, pending: Pending, ok: bool) -> None:
        """Count one datagram accepted, its lines safe, or dropped as `publish_lost`."""
        count, escaped, app, source, lost = pending
        stats = self._stats
        if not ok:
            stats.dropped["publish_lost"] += 1
            stats.lines_dropped["publish_lost"] += count
            return
        stats.datagrams_accepted += 1
        stats.lines += count
        stats.escaped += escaped
        if lost:
            stats.count_lost(app or self.config.app, source or self.config.source, lost)
