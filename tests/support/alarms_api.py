"""Reading a running collector's alarms from its API, for the end-to-end tests."""

from __future__ import annotations

from typing import Any

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for


def alarms(collector: CollectorProcess, query: str = "") -> list[dict[str, Any]]:
    """GET /v1/alarms?QUERY, oldest first."""
    found: list[dict[str, Any]] = collector.get(f"/v1/alarms?limit=1000&{query}")["alarms"]
    return found[::-1]


def wait_alarms(collector: CollectorProcess, query: str, count: int, what: str,
                within: float = 10.0) -> list[dict[str, Any]]:
    """Poll /v1/alarms?QUERY until it lists exactly `count` alarms; return them."""
    def check() -> list[dict[str, Any]] | None:
        found = alarms(collector, query)
        return found if len(found) == count else None

    return wait_for(check, within, what)
