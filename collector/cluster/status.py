"""The cluster's status, pure: which nodes are up or missing (from the heartbeats in the
`nodes` bucket and what this node saw before), and the `healthy` verdict with its
reasons, from heartbeat documents, stream views and server probes."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.cluster.kv import Item
from collector.cluster.survey import StreamView

# A node whose heartbeat vanished stays "missing" this long unless it deletes its key.
FORGET_AFTER = 3600.0
# A spool that has held something this long means NATS is not taking this node's lines.
SPOOL_STUCK = 60.0
TTL_FACTOR = 3


@dataclass
class Roster:
    """The nodes this node has seen heartbeats of, so that one whose key expired (killed,
    cut off) is reported missing rather than silently absent. A node that stops cleanly
    writes a last heartbeat marked `left`, which makes the roster forget it (as does a
    deleted key)."""

    forget_after: float = FORGET_AFTER
    seen: dict[str, float] = field(default_factory=dict)
    """Node name -> the time of its last heartbeat seen."""

    def observe(self, items: Iterable[Item], now: float) -> None:
        """Note the bucket's keys as read at `now` (deletion markers included)."""
        for item in items:
            document = parse(item)
            if item.deleted or (document or {}).get("left"):
                self.seen.pop(item.key, None)
                continue
            moment = document.get("time") if document else None
            self.seen[item.key] = float(moment) if isinstance(moment, int | float) else now
        for name, moment in list(self.seen.items()):
            if now - moment > self.forget_after:
                del self.seen[name]

    def missing(self, present: Iterable[str]) -> dict[str, float]:
        """Nodes seen before and not in the bucket now: name -> time of the last
        heartbeat seen."""
        here = set(present)
        return {name: moment for name, moment in sorted(self.seen.items())
                if name not in here}


def parse(item: Item) -> dict[str, Any] | None:
    """A heartbeat document, or None when the value is not one."""
    try:
        document = json.loads(item.value)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def node_views(documents: Sequence[dict[str, Any]], missing: dict[str, float],
               now: float) -> list[dict[str, Any]]:
    """One row per node: its heartbeat with `age` and `state` (up; left: it stopped
    cleanly; stale: older than its TTL; missing: its key is gone)."""
    rows: list[dict[str, Any]] = []
    for document in documents:
        age = max(0.0, now - float(document.get("time") or 0.0))
        ttl = TTL_FACTOR * float(document.get("interval") or 5.0)
        state = "left" if document.get("left") else "up" if age <= ttl else "stale"
        rows.append({**document, "age": round(age, 3), "state": state})
    for name, moment in missing.items():
        rows.append({"node": name, "state": "missing", "age": round(max(0.0, now - moment), 3)})
    return sorted(rows, key=lambda row: str(row.get("node")))


def reasons(nodes: Sequence[dict[str, Any]], streams: Sequence[StreamView],
            servers: Sequence[dict[str, Any]], errors: Sequence[str],
            now: float) -> list[str]:
    """Why the cluster is not healthy (empty: healthy): a node missing or stale, a spool
    stuck, a materializer falling further behind, a stream without leader or with fewer
    current replicas than configured, a configured NATS server that does not answer,
    and what could not be read at all."""
    found = list(errors)
    for node in nodes:
        name, age = node.get("node"), node.get("age", 0.0)
        if node["state"] == "missing":
            found.append(f"node {name}: missing, last heartbeat {age:.0f}s ago")
            continue
        if node["state"] == "stale":
            found.append(f"node {name}: last heartbeat {age:.0f}s ago")
        spool = node.get("spool") or {}
        since = spool.get("since")
        if since is not None and now - since > SPOOL_STUCK:
            found.append(f"node {name}: spool not empty for {now - since:.0f}s "
                         f"({spool.get('lines', 0)} lines)")
        materializer = node.get("materializer") or {}
        if materializer.get("lag_growing"):
            found.append(f"node {name}: materializer lag growing "
                         f"({materializer.get('lag')} messages)")
    for stream in streams:
        if not stream.leader:
            found.append(f"stream {stream.name}: no leader")
        if len(stream.current) < stream.replicas:
            detail = "".join(f", {state}: {', '.join(peers)}" for state, peers in
                             (("lagging", stream.lagging), ("offline", stream.offline))
                             if peers)
            found.append(f"stream {stream.name}: {len(stream.current)} of "
                         f"{stream.replicas} replicas current{detail}")
    for server in servers:
        if not server.get("answers"):
            found.append(f"nats server {server.get('url')}: does not answer "
                         f"({server.get('error', '?')})")
    return found


def status_document(node: str, now: float, *, documents: Sequence[dict[str, Any]],
                    missing: dict[str, float], streams: Sequence[StreamView],
                    servers: Sequence[dict[str, Any]], connected: dict[str, Any],
                    errors: Sequence[str]) -> dict[str, Any]:
    """`GET /v1/cluster`: nodes, NATS servers, streams, and the verdict."""
    nodes = node_views(documents, missing, now)
    why = reasons(nodes, streams, servers, errors, now)
    return {
        "node": node,
        "time": now,
        "healthy": not why,
        "reasons": why,
        "nodes": nodes,
        "servers": {"connected": connected, "configured": list(servers)},
        "streams": [stream.to_json() for stream in streams],
    }
