"""Resolved notifications over real processes: a collector fed crypto datagrams on a
loopback port notifies a real webhook receiver of a listen queue that stops being full, a
silent source that logs again, and a rate that falls below its threshold, each resolved
once, with the `group` and `alert` of its firing notification."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.alarms_api import alarms
from tests.support.collector_proc import CRYPTO_LISTENER, CollectorProcess
from tests.support.net import wait_for
from tests.support.send import crypto_lines, send
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.e2e

SECRET = "resolve-test-secret"
FULL = ('Tue Dec  1 02:00:00 2026 - *** uWSGI listen queue of socket "127.0.0.1:9000" '
        "(fd: 3) full !!! (101/100) ***")
FIVE = "GET /pay => generated 0 bytes in 3 msecs (HTTP/1.1 503) 2 headers"


def ship(collector: CollectorProcess, source: str, *lines: str) -> None:
    """Send lines as shop/SOURCE to the crypto listener."""
    send(crypto_lines(lines, SECRET, prefix=f"shop/{source}"), collector.port("crypto"))


def payloads(hook: WebhookServer, alarm: str) -> list[dict[str, Any]]:
    """The payloads of alarm `alarm` the receiver accepted, in arrival order."""
    return [r.json() for r in hook.requests if r.status < 300 and r.json()["alarm"] == alarm]


def statuses(hook: WebhookServer, alarm: str) -> list[str]:
    """The `status` of each of `alarm`'s payloads."""
    return [p["status"] for p in payloads(hook, alarm)]


def test_backlog_silence_and_rate_resolve_once_each(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """Each stateful condition fires, then clears and is resolved once at the webhook,
    the resolved payload sharing its firing one's group and alert and naming the same
    source; a log-alarm of the same run gets no resolved notification."""
    hook = new_webhook()
    collector = new_collector(env={"LOG_SECRET": SECRET}, config=CRYPTO_LISTENER + f"""
[app:shop]
alarm = backlog webhook:{hook.url}/backlog;timeout=2
alarm = quiet webhook:{hook.url}/quiet;timeout=2
alarm = rate webhook:{hook.url}/rate;timeout=2
alarm = line webhook:{hook.url}/line;timeout=2
alarm-backlog = backlog
alarm-silence = quiet 2 ^web\\.2$
alarm-rate = rate 3/2 HTTP/1\\.1 5\\d\\d
log-alarm = line ^order \\d+ failed
alarm-resolve-after = 1
""")
    collector.start()
    ship(collector, "web.2", "hello")
    ship(collector, "web.1", FULL, "order 7 failed")
    ship(collector, "web.1", FULL, FIVE, FIVE, FIVE)
    for alarm in ("backlog", "rate", "line"):
        wait_for(lambda a=alarm: statuses(hook, a)[:1] == ["firing"], 10,  # type: ignore[misc]
                 f"{alarm} firing")
    wait_for(lambda: statuses(hook, "quiet") == ["firing"], 10, "web.2's silence")
    ship(collector, "web.2", "back again")
    for alarm in ("backlog", "rate", "quiet"):
        wait_for(lambda a=alarm: "resolved" in statuses(hook, a), 10,  # type: ignore[misc]
                 f"{alarm} resolved")
    # Longer than resolve-after, the rate window and a tick: a second resolved would
    # have come by now.
    time.sleep(3.0)
    for alarm, source in (("backlog", "web.1"), ("rate", "web.1"), ("quiet", "web.2")):
        sent = payloads(hook, alarm)
        assert [p["status"] for p in sent].count("resolved") == 1, sent
        firing = sent[0]
        resolved = next(p for p in sent if p["status"] == "resolved")
        assert firing["status"] == "firing"
        assert (resolved["group"], resolved["alert"], resolved["source"]) == (
            firing["group"], firing["alert"], source)
        assert resolved["alert"].startswith("alt_")
        assert resolved["id"] != firing["id"]
    assert statuses(hook, "line") == ["firing"]
    assert payloads(hook, "line")[0]["alert"] == ""
    # The outbox says the same: /v1/alarms carries status, group and alert, and
    # `collector alarms` marks each resolved notification beside its condition.
    kept = {(a["alarm"], a["status"]): a for a in alarms(collector)}
    for alarm in ("backlog", "rate", "quiet"):
        resolved = kept[(alarm, "resolved")]
        assert (resolved["group"], resolved["alert"]) == (
            kept[(alarm, "firing")]["group"], kept[(alarm, "firing")]["alert"])
    listed = collector.cli("alarms")
    assert listed.returncode == 0, listed.stderr
    for condition in ("backlog", "rate", "silence"):
        assert listed.stdout.count(f"  {condition} resolved  ") == 1, listed.stdout
