"""`collector cluster status`: GET /v1/cluster and print it as tables (or JSON); the
exit status says whether the cluster is healthy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from collector.client.api import ApiClient

UNHEALTHY = 1


async def fetch_status(url: str, token: str | None) -> dict[str, Any]:
    """The status document of the collector at `url`."""
    async with ApiClient(url, token) as client:
        document: dict[str, Any] = await client.request_json("GET", "/v1/cluster")
    return document


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart."""
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                      ).rstrip() for row in cells]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return f"{count:.1f}GiB"


def format_status(doc: dict[str, Any]) -> str:
    """The status as an operator reads it: the verdict and its reasons, then nodes, NATS
    servers, streams and durable consumers."""
    when = datetime.fromtimestamp(doc["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = [f"cluster {'healthy' if doc['healthy'] else 'UNHEALTHY'} "
           f"(as seen by node {doc['node']} at {when})"]
    out += [f"  - {reason}" for reason in doc["reasons"]]
    rows = []
    for node in doc["nodes"]:
        spool = node.get("spool") or {}
        materializer = node.get("materializer") or {}
        latency = node.get("publish_seconds") or {}
        leader = node.get("alarms_leader")
        rows.append([node["node"], node["state"], f"{node['age']:.1f}s",
                     node.get("lines_per_second"),
                     f"{spool.get('batches', '-')}/{spool.get('lines', '-')}/"
                     f"{_size(spool['bytes']) if 'bytes' in spool else '-'}",
                     materializer.get("lag"), materializer.get("applied_seq"),
                     f"{_ms(latency.get('p50'))}/{_ms(latency.get('p99'))}",
                     "-" if leader is None else ("yes" if leader else "no")])
    out += ["", "NODES", *table(["node", "state", "heartbeat", "lines/s",
                                 "spool batches/lines/bytes", "lag", "applied",
                                 "publish p50/p99 ms", "alarms leader"], rows)]
    servers = doc["servers"]
    connected = (servers.get("connected") or {}).get("server_name")
    rows = [[s["url"], "yes" if s.get("answers") else f"no ({s.get('error', '?')})",
             s.get("name"), s.get("version"),
             "yes" if connected and s.get("name") == connected else ""]
            for s in servers["configured"]]
    out += ["", "NATS SERVERS", *table(["url", "answers", "name", "version", "connected"],
                                       rows)]
    rows = [[s["name"], s["leader"], s["replicas"], ",".join(s["current"]) or "-",
             ",".join(s["lagging"]) or "-", ",".join(s["offline"]) or "-", s["messages"],
             _size(s["bytes"])] for s in doc["streams"]]
    out += ["", "STREAMS", *table(["stream", "leader", "replicas", "current", "lagging",
                                   "offline", "messages", "bytes"], rows)]
    rows = [[s["name"], c["name"], c["lag"], c["ack_pending"]]
            for s in doc["streams"] for c in s["consumers"]]
    out += ["", "CONSUMERS"]
    out += table(["stream", "consumer", "lag", "ack pending"], rows) if rows else [
        "(no durable consumers)"]
    return "\n".join(out) + "\n"


async def run_status(url: str, token: str | None, as_json: bool, out: TextIO) -> int:
    """Print the status; 0 when healthy, 1 when not."""
    doc = await fetch_status(url, token)
    out.write(json.dumps(doc, ensure_ascii=False, indent=2) + "\n" if as_json
              else format_status(doc))
    return 0 if doc["healthy"] else UNHEALTHY
