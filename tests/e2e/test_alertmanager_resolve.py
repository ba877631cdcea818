"""Resolve and re-post against a real Alertmanager (Debian's): a listen queue that stops
being full becomes resolved there long before its resolve_timeout would end it, and one
that stays full is re-posted so that it stays active past its endsAt."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.alarms_api import wait_alarms
from tests.support.alertmanager_proc import AlertmanagerProcess
from tests.support.collector_proc import CRYPTO_LISTENER, CollectorProcess
from tests.support.net import wait_for
from tests.support.send import crypto_lines, send

pytestmark = pytest.mark.e2e

SECRET = "am-resolve-test-secret"
FULL = ('Tue Dec  1 02:00:00 2026 - *** uWSGI listen queue of socket "127.0.0.1:9000" '
        "(fd: 3) full !!! (101/100) ***")


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[AlertmanagerProcess]:
    """A running Alertmanager, stopped after the test."""
    made = AlertmanagerProcess(tmp_path / "alertmanager")
    made.start()
    yield made
    made.stop()


def start(new_collector: Callable[..., CollectorProcess], app: str) -> CollectorProcess:
    """A started collector with a crypto listener and `[app:shop]` = `app`."""
    collector = new_collector(config=CRYPTO_LISTENER + "\n[app:shop]\n" + app,
                              env={"LOG_SECRET": SECRET})
    collector.start()
    return collector


def full(collector: CollectorProcess) -> None:
    """shop/web.1 reports its listen queue full."""
    send(crypto_lines([FULL], SECRET, prefix="shop/web.1"), collector.port("crypto"))


def held(manager: AlertmanagerProcess) -> list[dict[str, Any]]:
    """The alerts Alertmanager holds as not yet ended (its /api/v2/alerts)."""
    return [a for a in manager.alerts() if a["labels"].get("alertname") == "queue"]


def received(manager: AlertmanagerProcess, status: str) -> int:
    """Alerts of `status` (firing, resolved) Alertmanager says it received (/metrics)."""
    # The URL is always http://127.0.0.1:PORT/metrics.
    with urllib.request.urlopen(manager.url + "/metrics", timeout=5) as answer:  # noqa: S310
        text = answer.read().decode()
    found = re.search(r'^alertmanager_alerts_received_total\{status="' + status
                      + r'",version="v2"\} (\d+)', text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_a_backlog_that_clears_becomes_resolved_in_alertmanager(
        new_collector: Callable[..., CollectorProcess],
        manager: AlertmanagerProcess) -> None:
    """The full queue shows active; a second after its last report the collector posts
    the same labels with endsAt in the past, so Alertmanager counts a resolved alert and
    no longer lists it, though resolve_timeout (10m) would have kept it for minutes."""
    collector = start(new_collector, f"""
alarm = queue alertmanager:{manager.url};resolve_timeout=10m
alarm-backlog = queue
alarm-resolve-after = 1
""")
    full(collector)
    (active,) = wait_for(lambda: held(manager), 15, "the alert in Alertmanager")
    assert active["status"]["state"] == "active"
    assert active["labels"]["condition"] == "backlog"
    wait_for(lambda: not held(manager), 15, "the alert resolved in Alertmanager")
    assert received(manager, "resolved") == 1
    entries = wait_alarms(collector, "state=delivered", 2, "firing and resolved delivered")
    assert [e["outcome"] for e in entries] == ["HTTP 200", "HTTP 200"]


def test_a_backlog_still_full_is_reposted_and_stays_active(
        new_collector: Callable[..., CollectorProcess],
        manager: AlertmanagerProcess) -> None:
    """With resolve_timeout 4s (re-posted every 2 s) a queue reported full for 10 s
    stays active in Alertmanager all along, though alarm-freq lets one firing through:
    the re-posts push its endsAt on."""
    collector = start(new_collector, f"""
alarm = queue alertmanager:{manager.url};resolve_timeout=4s
alarm-backlog = queue
alarm-resolve-after = 3
""")
    full(collector)
    wait_for(lambda: held(manager), 15, "the alert in Alertmanager")
    ends = set()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        full(collector)
        (active,) = held(manager)
        ends.add(active["endsAt"])
        time.sleep(0.5)
    assert len(ends) >= 3  # re-posted: its endsAt moved on
    assert received(manager, "firing") >= 4
    wait_for(lambda: not held(manager), 15, "the alert resolved once the queue cleared")
    assert received(manager, "resolved") == 1
