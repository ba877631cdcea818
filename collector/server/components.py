"""The one place that lists the server's parts beyond its core, built from the Config.

The server starts these after the store and ingest and before the listeners (so no record
goes by unseen), and stops them in reverse order after the listeners have closed.
"""

from __future__ import annotations

from alarms.cluster import ClusterAlarmsComponent
from alarms.component import AlarmsComponent
from alarms.outbox.kv import BUCKET as OUTBOX_BUCKET
from alarms.outbox.kv import KvOutbox
from collector.cluster.component import ClusterComponent
from collector.config.model import Config
from collector.listen.drain_component import DrainComponent
from collector.server.context import Component
from collector.store.base import Store


def build_cluster(config: Config, local: Store) -> ClusterComponent | None:
    """The cluster component when `[cluster]` is configured (its `sink` is then ingest's
    store); None in single-node mode, which is unchanged."""
    if config.cluster is None:
        return None
    return ClusterComponent(config, config.cluster, local)


def build_components(config: Config, cluster: ClusterComponent | None = None
                     ) -> list[Component]:
    """The parts to start, in order: the alarms (engine, outbox, delivery; in cluster
    mode the leader-elected ones over the shared log, alarms.cluster), then the Heroku
    drains (collector.listen.drain_component), which feed ingest."""
    # The drains come last: they feed ingest, so the alarms must be listening before.
    if cluster is None:
        return [AlarmsComponent(config), DrainComponent(config)]
    connection = cluster.connection
    return [ClusterAlarmsComponent(
        config, cluster, lambda: KvOutbox(lambda: connection.bucket(OUTBOX_BUCKET))),
        DrainComponent(config)]
