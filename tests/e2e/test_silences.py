"""Silences over real processes: made with `collector silence add`, they hold back a
matching 5xx alarm (recorded as silenced, never at the receiver) and let a non-matching
one through, across a collector restart, until expired or ended on time."""

from __future__ import annotations

import getpass
import json
import re
import time
from collections.abc import Callable

import pytest

from tests.support.alarms_api import alarms, wait_alarms
from tests.support.collector_proc import CRYPTO_LISTENER, CollectorProcess
from tests.support.net import wait_for
from tests.support.send import crypto_lines, send
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.e2e

SECRET = "silence-test-secret"
FIVE = "GET /pay => generated 0 bytes in 3 msecs (HTTP/1.1 503) 2 headers"
ORDER = "order 7 failed"


def ship(collector: CollectorProcess, *lines: str) -> None:
    """Send lines as shop/web.1 to the crypto listener."""
    send(crypto_lines(lines, SECRET, prefix="shop/web.1"), collector.port("crypto"))


def messages(hook: WebhookServer) -> list[str]:
    """The messages the receiver accepted, in arrival order."""
    return [r.json()["message"] for r in hook.requests if r.status < 300]


def add(collector: CollectorProcess, *args: str) -> str:
    """`collector silence add ARGS`; the id it prints."""
    made = collector.cli("silence", "add", "--app", "shop", *args)
    assert made.returncode == 0, made.stderr
    silence_id = made.stdout.strip()
    assert silence_id.startswith("sil_"), made.stdout
    return silence_id


def silenced_by(collector: CollectorProcess, count: int) -> list[str]:
    """Wait for `count` silenced alarms; their silence ids, oldest first."""
    return [e["silence"] for e in wait_alarms(collector, "state=silenced", count,
                                              f"{count} silenced alarm(s)")]


def test_silence_holds_matching_alarms_across_restart_until_it_ends(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A silence on alarm `five` holds back 5xx alarms before and after a restart while
    `order` alarms are delivered; `silence expire` ends it; a second silence (`--match`,
    `--for 3s`) holds one more and then, having ended on time, none."""
    hook = new_webhook()
    collector = new_collector(env={"LOG_SECRET": SECRET}, config=CRYPTO_LISTENER + f"""
[app:shop]
alarm = five webhook:{hook.url}/five;timeout=2
alarm = order webhook:{hook.url}/order;timeout=2
log-alarm = five HTTP/1\\.1 5\\d\\d
log-alarm = order ^order \\d+ failed
# Every 5xx is its own alarm here, not a repeat held back by alarm-freq.
alarm-freq = 0.1
""")
    collector.start()
    long_id = add(collector, "--alarm", "five", "--for", "1h", "--comment", "deploying",
                  "--by", "ana")
    ship(collector, FIVE, ORDER)
    wait_for(lambda: messages(hook) == [ORDER], 10, "the order alarm delivered")
    assert silenced_by(collector, 1) == [long_id]
    listed = collector.cli("alarms", "--silenced")
    assert listed.returncode == 0, listed.stderr
    assert f"silence {long_id}" in listed.stdout
    assert "  silenced   shop/five (webhook)  " in listed.stdout

    collector.stop()
    collector.start()
    shown = collector.cli("silence", "list")
    assert shown.returncode == 0, shown.stderr
    assert long_id in shown.stdout
    assert "by ana: deploying" in shown.stdout
    ship(collector, FIVE, ORDER)
    wait_for(lambda: messages(hook) == [ORDER, ORDER], 10, "the second order alarm")
    assert silenced_by(collector, 2) == [long_id, long_id]

    expired = collector.cli("silence", "expire", long_id, "--by", "bo")
    assert expired.returncode == 0, expired.stderr
    short_id = add(collector, "--match", r"HTTP/1\.1 503", "--for", "3s", "--comment",
                   "restarting payments")
    ship(collector, FIVE)
    assert silenced_by(collector, 3) == [long_id, long_id, short_id]
    (doc,) = collector.get("/v1/silences")["silences"]
    # Ends on time, with no restart: a 5xx after its end is delivered.
    wait_for(lambda: time.time() > doc["ends_at"] + 0.2 or None, 10, "the silence's end")
    ship(collector, FIVE)
    wait_for(lambda: messages(hook) == [ORDER, ORDER, FIVE], 10, "a 5xx alarm delivered")
    assert len(alarms(collector, "state=silenced")) == 3
    assert collector.get("/v1/silences")["silences"] == []
    # This process's count: two since the restart.
    assert collector.metrics()['collector_alarms_silenced_total{alarm="five",app="shop",'
                               'plugin="webhook"}'] == 2
    everything = collector.cli("silence", "list", "--all", "--json")
    ended = {d["id"]: d for d in map(json.loads, everything.stdout.splitlines())}
    assert set(ended) == {long_id, short_id}
    assert (ended[long_id]["expired_by"], ended[long_id]["active"]) == ("bo", False)
    assert ended[short_id]["expired_at"] is None

    events = [(m.group(1), m.group(3), m.group(2)) for m in re.finditer(
        r"\] (silence_\w+) .*? by=(\S+) .*?id=(sil_\w+)", collector.output())]
    assert events == [("silence_created", long_id, "ana"), ("silence_expired", long_id, "bo"),
                      ("silence_created", short_id, getpass.getuser())]
    assert "alarm=five app=shop by=ana comment=deploying" in collector.output()


def test_silences_api_validates_and_answers_404(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """POST names the bad field in a 400; DELETE of an unknown id is a 404; a good POST
    is 201 and listed."""
    collector = new_collector(config="[app:shop]\n")
    collector.start()
    status, body = collector.request("/v1/silences", "POST", {
        "app": "shop", "for": "2h", "source": "(", "comment": "x"})
    assert status == 400
    assert json.loads(body)["error"].startswith("source:")
    status, body = collector.request("/v1/silences/sil_unknown", "DELETE")
    assert (status, json.loads(body)["error"]) == (404, "no silence 'sil_unknown'")
    status, body = collector.request("/v1/silences", "POST", {
        "app": "shop", "until": "2h", "comment": "x"})
    assert (status, json.loads(body)["error"]) == (400, "until: must be in the future")
    status, body = collector.request("/v1/silences", "POST", {
        "app": "shop", "for": "2h", "comment": "x", "created_by": "api-user"})
    assert status == 201
    made = json.loads(body)
    assert made["created_by"] == "api-user"
    assert [s["id"] for s in collector.get("/v1/silences")["silences"]] == [made["id"]]
    status, _ = collector.request("/v1/silences?all=maybe")
    assert status == 400
    refused = collector.cli("silence", "add", "--app", "shop", "--for", "soon",
                            "--comment", "x")
    assert refused.returncode != 0
    assert "collector answered 400: for:" in refused.stderr
    unknown = collector.cli("silence", "expire", "sil_nope")
    assert unknown.returncode != 0
    assert "404" in unknown.stderr
