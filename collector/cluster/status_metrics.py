"""The heartbeat loop's figures for /metrics: nodes by state, each stream's messages,
bytes, leader and replicas by state, heartbeats written and failed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from collector.cluster.heartbeat import Heartbeat
from collector.cluster.status import node_views
from collector.metrics import Metric, counter, gauge

NODE_STATES = ("up", "left", "stale", "missing")
REPLICA_STATES = ("current", "lagging", "offline")


def status_families(heartbeat: Heartbeat, quorum: bool) -> Iterator[Metric]:
    """Families as of the heartbeat loop's last round (no NATS request at scrape time)."""
    present = [str(d.get("node")) for d in heartbeat.documents]
    rows = node_views(heartbeat.documents, heartbeat.roster.missing(present), time.time())
    states = Counter(row["state"] for row in rows)
    nodes = gauge("collector_cluster_nodes",
                  "Nodes by state as this node last read the heartbeats (left: stopped "
                  "cleanly; stale: older than its TTL; missing: its heartbeat expired)", ["state"])
    for state in NODE_STATES:
        nodes.add_metric([state], states[state])
    yield nodes
    labels = ["stream"]
    messages = gauge("collector_cluster_stream_messages", "Messages in each stream", labels)
    size = gauge("collector_cluster_stream_bytes", "Bytes in each stream", labels)
    leader = gauge("collector_cluster_stream_leader",
                   "1 when the stream had a leader at the last poll", labels)
    configured = gauge("collector_cluster_stream_replicas_configured",
                       "Replicas each stream is configured with", labels)
    replicas = gauge("collector_cluster_stream_replicas",
                     "Each stream's replicas by state (the leader counts as current)",
                     ["stream", "state"])
    for view in heartbeat.streams:
        messages.add_metric([view.name], view.messages)
        size.add_metric([view.name], view.bytes)
        leader.add_metric([view.name], 1 if view.leader else 0)
        configured.add_metric([view.name], view.replicas)
        for state, peers in zip(REPLICA_STATES, (view.current, view.lagging, view.offline),
                                strict=True):
            replicas.add_metric([view.name, state], len(peers))
    yield from (messages, size, leader, configured, replicas)
    beats = counter("collector_cluster_heartbeats", "Heartbeats this node wrote")
    beats.add_metric([], heartbeat.beats)
    failures = counter("collector_cluster_heartbeat_failures",
                       "Rounds of the heartbeat loops that failed, by step (heartbeat: "
                       "write and read the nodes bucket; stream_poll: list the streams); "
                       "logged once per outage", ["step"])
    for step in ("heartbeat", "stream_poll"):
        failures.add_metric([step], heartbeat.failures[step])
    document = heartbeat.last_document or {}
    rate = gauge("collector_cluster_lines_per_second",
                 "Lines this node received per second over the last heartbeat interval")
    rate.add_metric([], document.get("lines_per_second") or 0.0)
    reach = gauge("collector_cluster_quorum",
                  "1 while this node reaches a quorum (as /healthz says)")
    reach.add_metric([], 1 if quorum else 0)
    yield from (beats, failures, rate, reach)
