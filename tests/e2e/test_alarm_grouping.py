"""Grouping over real processes: a burst of twenty distinct 5xx request-log lines sent to a
real collector within `alarm-group-wait` arrives at a real webhook receiver as one
notification listing all twenty (with their sources and counts), and a later burst
within `alarm-group-interval` as one more."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.alarms_api import wait_alarms
from tests.support.collector_proc import CRYPTO_LISTENER, CollectorProcess
from tests.support.net import wait_for
from tests.support.send import crypto_lines, send
from tests.support.webhook import Received, WebhookServer

pytestmark = pytest.mark.e2e

SECRET = "grouping-test-secret"
SOURCES = ("web.0", "web.1", "web.2", "web.3")


def request_line(index: int, status: int) -> str:
    """A uWSGI request-log line for GET /item/INDEX answered with `status`."""
    return (f"[pid: 4242|app: 0|req: {index}/{index + 10}] 127.0.0.1 () {{34 vars in 512 "
            f"bytes}} [Tue Dec  1 02:00:00 2026] GET /item/{index} => generated 21 bytes "
            f"in 3 msecs (HTTP/1.1 {status}) 2 headers in 80 bytes (1 switches on core 0)")


def burst(collector: CollectorProcess, indices: range) -> dict[str, str]:
    """Send one distinct 5xx line per index, spread over SOURCES; message by source."""
    sent: dict[str, str] = {}
    for index in indices:
        source = SOURCES[index % len(SOURCES)]
        line = request_line(index, 500 + index % 4)
        send(crypto_lines([line], SECRET, prefix=f"shop/{source}"), collector.port("crypto"))
        sent[line] = source
    return sent


def accepted(hook: WebhookServer) -> list[Received]:
    """The requests the receiver accepted, in arrival order."""
    return [r for r in hook.requests if r.status < 300]


def test_a_burst_of_twenty_is_one_webhook_and_a_later_burst_one_more(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """Twenty distinct 5xx lines within group-wait (1 s): one webhook whose `members` list
    all twenty with their sources and counts. Five more sent after it, within the interval
    (2 s): one more webhook, not sooner than the interval after the first. Each of the 25
    shows in /v1/alarms and `collector alarms` as delivered, naming the grouped send that
    carried it."""
    hook = new_webhook()
    collector = new_collector(env={"LOG_SECRET": SECRET}, config=CRYPTO_LISTENER + f"""
[app:shop]
alarm = five webhook:{hook.url}/five;timeout=5
log-alarm = five HTTP/1\\.1 5\\d\\d
alarm-group-wait = 1s
alarm-group-interval = 2s
""")
    collector.start()
    first_burst = burst(collector, range(20))
    wait_for(lambda: len(accepted(hook)) == 1 or None, 15, "the first grouped webhook")
    second_burst = burst(collector, range(20, 25))
    wait_for(lambda: len(accepted(hook)) == 2 or None, 15, "the second grouped webhook")

    first, second = accepted(hook)
    doc = first.json()
    assert len(doc["members"]) == 20
    assert {m["message"]: m["source"] for m in doc["members"]} == first_burst
    assert all(m["count"] == 1 and m["id"].startswith("msg_") for m in doc["members"])
    assert doc["count"] == 20
    assert doc["group"].startswith("grp_")
    assert first.webhook_id == doc["id"]
    later = second.json()
    assert {m["message"]: m["source"] for m in later["members"]} == second_burst
    assert second.arrived - first.arrived >= 1.5  # held to the interval (2 s)

    entries = wait_alarms(collector, "state=delivered", 25, "25 delivered members")
    carried = {e["id"]: e["outcome"] for e in entries}
    assert all(f"grouped: {doc['id']}, 20 members" in carried[m["id"]]
               for m in doc["members"])
    assert all(f"grouped: {later['id']}, 5 members" in carried[m["id"]]
               for m in later["members"])
    listed = collector.cli("alarms")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count(f"grouped: {doc['id']}, 20 members") == 20
    assert len(accepted(hook)) == 2
