"""The cluster as a server component: connection, publisher, spool, materializer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from collector.cluster.anchor import BUCKET as ANCHORS
from collector.cluster.anchor import Anchors
from collector.cluster.api import ClusterStatus
from collector.cluster.bringup import FIRST_DELAY, bring_up
from collector.cluster.checkpoint import Checkpoint
from collector.cluster.connection import Connection
from collector.cluster.errors import ClusterError
from collector.cluster.heartbeat import Figures, Heartbeat, buckets_of
from collector.cluster.materializer import Materializer
from collector.cluster.publisher import Publisher
from collector.cluster.sink import PublishingStore
from collector.cluster.spool import Spool
from collector.cluster.status import Roster
from collector.cluster.status_metrics import status_families
from collector.cluster.stream import stream_config, subject
from collector.config.model import ClusterConfig, Config
from collector.metrics import Metric, counter, gauge, histogram_families
from collector.store.base import Store

if TYPE_CHECKING:
    from collector.server.context import Context

log = structlog.get_logger("collector.cluster")


class ClusterComponent:
    """Built before ingest (its `sink` is ingest's store); started first, stopped last."""

    def __init__(self, config: Config, cluster: ClusterConfig, local: Store) -> None:
        self._config = config
        self._cluster = cluster
        self._local = local
        self.connection = Connection(cluster)
        self.spool = Spool(config.store.data_dir / "cluster-spool.sqlite", cluster.spool_size)
        self.publisher = Publisher(self.connection, self.spool, cluster.node,
                                   subject(cluster.node))
        self.sink = PublishingStore(local, self.publisher)
        self.materializer: Materializer | None = None
        self._context: Context | None = None
        self._started_at = time.time()
        # Set by the alarms' leader lease when it runs: whether this node holds it.
        self.alarms_leader: Callable[[], bool] | None = None
        self.heartbeat = Heartbeat(self.connection, cluster.node, cluster.heartbeat,
                                   self._figures, Roster())
        self.status = ClusterStatus(cluster, self.connection, self.heartbeat)
        self._bringup: asyncio.Task[int] | None = None
        # Set once NATS answered, the stream is set up and the materializer runs.
        self.up = asyncio.Event()

    def _figures(self, stream_last_seq: int | None) -> Figures:
        """This node's counters now, for its heartbeat."""
        context, spool = self._context, self.spool
        listeners = context.listeners if context is not None else []
        stats = [listener.stats for listener in listeners]
        return Figures(
            node=self._cluster.node, boot=self.publisher.boot, started_at=self._started_at,
            time=time.time(), interval=self._cluster.heartbeat,
            listeners=tuple({"name": c.name, "udp": f"{c.host}:{c.port}", "format": c.format}
                            for c in (context.config if context else self._config).listeners),
            received=sum(s.lines + sum(s.lines_dropped.values()) for s in stats),
            accepted=sum(s.lines for s in stats), acked=self.publisher.acked_lines,
            spool_batches=spool.batches, spool_lines=spool.lines, spool_bytes=spool.bytes,
            applied_seq=self.materializer.position.seq if self.materializer else 0,
            stream_last_seq=stream_last_seq, latency=buckets_of(self.publisher.latency),
            alarms_leader=self.alarms_leader() if self.alarms_leader else None)

    async def start(self, context: Context) -> None:
        """Publish (into the spool until NATS answers), then connect, set up the stream
        and materialize: at once if NATS answers, else in the background, retried with
        backoff. Bad creds or TLS files fail here (ConfigError), not in the retries."""
        self.connection.options()
        # The store's newest id now, before ingest hands out local ids of its own.
        store_last = context.ingest.last_id
        self._context = context
        context.health["cluster"] = self.health
        self.publisher.start()

        async def step() -> None:
            await self.connection.open()
            await self.connection.ensure_stream(
                stream_config(self._cluster, self._config.store))
            if self.materializer is None:
                checkpoint = Checkpoint(self._config.store.data_dir / "cluster-state.sqlite")
                materializer = Materializer(
                    self.connection, self._local, context.hub, checkpoint,
                    store_last=store_last,
                    anchors=Anchors(lambda: self.connection.bucket(
                        ANCHORS, ttl=self._config.store.retention)))
                try:
                    await materializer.start()
                except ClusterError:
                    checkpoint.close()
                    raise
                self.materializer = materializer
                self.up.set()
                # Only now: its first stream poll then finds the leader at once (/healthz).
                self.heartbeat.start()

        try:
            await step()
        except ClusterError as exc:
            log.warning("cluster_not_up", attempt=1, error=str(exc),
                        note="starting anyway: accepting into the spool, retrying NATS")
            self._bringup = asyncio.create_task(bring_up(step, first=FIRST_DELAY * 2),
                                                name="cluster-bringup")

    def health(self) -> dict[str, Any]:
        """For /healthz: this node's name and whether it reaches a quorum: connected, the
        stream had a leader at a recent poll, the last publish was acknowledged and
        nothing waits in the spool."""
        quorum = (self.connection.connected and self.heartbeat.leader_fresh()
                  and (self.publisher.last_ok or self.publisher.acked_batches == 0))
        return {"node": self._cluster.node, "quorum": bool(quorum and not self.spool.batches)}

    async def stop(self) -> None:
        """Stop beating (this node's heartbeat marked as left), bringing up, publishing
        (unacked batches to the spool), then materializing, then NATS."""
        await self.heartbeat.stop()
        if self._bringup is not None:
            self._bringup.cancel()
            await asyncio.gather(self._bringup, return_exceptions=True)
        await self.publisher.stop()
        if self.materializer is not None:
            await self.materializer.stop()
        await self.connection.close()
        self.spool.close()

    async def reload(self, config: Config) -> None:
        """Nothing: `[cluster]` changes need a restart."""

    def routes(self) -> Sequence[web.RouteDef]:
        """GET /v1/cluster."""
        return [web.get("/v1/cluster", self.status.handle)]

    def metric_families(self) -> Iterable[Metric]:
        """Spool depth, acks in flight, publish latency, materializer lag and position."""
        publisher, spool = self.publisher, self.spool
        depth = gauge("collector_cluster_spool", "Batches, lines and bytes in the spool",
                      ["unit"])
        for unit, value in (("batches", spool.batches), ("lines", spool.lines),
                            ("bytes", spool.bytes)):
            depth.add_metric([unit], value)
        yield depth
        inflight = gauge("collector_cluster_acks_in_flight", "Batches awaiting an ack")
        inflight.add_metric([], publisher.inflight)
        yield inflight
        acked = counter("collector_cluster_acked_lines", "Lines JetStream acknowledged")
        acked.add_metric([], publisher.acked_lines)
        yield acked
        refused = counter("collector_cluster_refused_lines",
                          "Lines refused by the publisher, by reason", ["reason"])
        refused.add_metric(["spool_full"], publisher.spool_full)
        refused.add_metric(["buffer_full"], publisher.buffer_full)
        yield refused
        lost = counter("collector_cluster_lost_lines",
                       "Lines of batches the spool could not write (logged as batch_lost)")
        lost.add_metric([], publisher.lost_lines)
        yield lost
        resolved = counter("collector_cluster_out_of_sequence",
                           "Publishes refused for the node's expected last sequence, then "
                           "resolved (an earlier try had landed, or the subject moved)")
        resolved.add_metric([], publisher.out_of_sequence)
        yield resolved
        yield from histogram_families(publisher.latency)
        materializer = self.materializer
        lag = gauge("collector_cluster_materializer_lag", "Messages not yet applied")
        seq = gauge("collector_cluster_applied_sequence", "Last stream sequence applied")
        lag.add_metric([], materializer.lag if materializer else 0)
        seq.add_metric([], materializer.position.seq if materializer else 0)
        yield lag
        yield seq
        yield from status_families(self.heartbeat, bool(self.health()["quorum"]))
