"""Alerts that survive a restart, over real processes: a collector that paged a full
listen queue, a silent source and a rate over its threshold, and was then restarted on
the same data directory, still tells a real webhook receiver when each cleared: once,
with the firing notification's `group` and `alert`."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.e2e.test_resolve import FIVE, FULL, payloads, ship, statuses
from tests.support.collector_proc import CRYPTO_LISTENER, CollectorProcess
from tests.support.net import wait_for
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.e2e

SECRET = "resolve-test-secret"


def test_alerts_firing_at_a_restart_resolve_once_after_it(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """Backlog, silence and rate fire; the collector is stopped before any clears and
    started again; with the queue quiet, the rate below its threshold and the silent
    source logging again, exactly one resolved notification of each arrives, sharing
    its firing one's group and alert, and the silent source is not paged again."""
    hook = new_webhook()
    collector = new_collector(env={"LOG_SECRET": SECRET}, config=CRYPTO_LISTENER + f"""
[app:shop]
alarm = backlog webhook:{hook.url}/backlog;timeout=2
alarm = quiet webhook:{hook.url}/quiet;timeout=2
alarm = rate webhook:{hook.url}/rate;timeout=2
alarm-backlog = backlog
alarm-silence = quiet 2 ^web\\.2$
alarm-rate = rate 3/6 HTTP/1\\.1 5\\d\\d
# Long enough that the collector is stopped before the queue counts as cleared.
alarm-resolve-after = 6
""")
    collector.start()
    ship(collector, "web.2", "hello")
    ship(collector, "web.1", FULL, FIVE, FIVE, FIVE)
    for alarm in ("backlog", "rate"):
        wait_for(lambda a=alarm: statuses(hook, a) == ["firing"], 10,  # type: ignore[misc]
                 f"{alarm} firing")
    wait_for(lambda: statuses(hook, "quiet") == ["firing"], 10, "web.2's silence")
    collector.stop()
    assert statuses(hook, "backlog") == statuses(hook, "rate") == ["firing"]

    collector.start()
    for alarm in ("backlog", "rate"):
        wait_for(lambda a=alarm: "resolved" in statuses(hook, a), 15,  # type: ignore[misc]
                 f"{alarm} resolved after the restart")
    # Longer than alarm-silence and a tick: web.2, restored as silent, is not paged again.
    time.sleep(3.0)
    assert statuses(hook, "quiet") == ["firing"]
    ship(collector, "web.2", "back again")
    wait_for(lambda: "resolved" in statuses(hook, "quiet"), 10, "web.2 resolved")
    time.sleep(2.0)
    for alarm, source in (("backlog", "web.1"), ("rate", "web.1"), ("quiet", "web.2")):
        sent = payloads(hook, alarm)
        # web.2 may have fallen silent again since (a new alert episode: firing).
        assert [p["status"] for p in sent][:2] == ["firing", "resolved"], sent
        assert [p["status"] for p in sent].count("resolved") == 1, sent
        if alarm != "quiet":
            assert len(sent) == 2, sent
        firing, resolved = sent[:2]
        assert (resolved["group"], resolved["alert"], resolved["source"]) == (
            firing["group"], firing["alert"], source)
        assert resolved["alert"].startswith("alt_")
