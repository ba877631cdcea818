"""The alarm outbox over real processes: alarms wait out a receiver outage and a kill -9
of the collector, then arrive exactly once each; dead letters are listed and sent again;
`collector alarms test` says what would fire and sends nothing."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.alarms_api import alarms, wait_alarms
from tests.support.collector_proc import CRYPTO_LISTENER, CollectorProcess
from tests.support.net import wait_for
from tests.support.send import crypto_lines, send
from tests.support.webhook import WebhookServer, verify_signature

pytestmark = pytest.mark.e2e

SECRET = "outbox-test-secret"
HOOK_SECRET = "whsec_" + base64.b64encode(b"outbox-e2e-signing-key").decode()


def ship(collector: CollectorProcess, *lines: str) -> None:
    """Send lines as shop/web.1 to the crypto listener."""
    send(crypto_lines(lines, SECRET, prefix="shop/web.1"), collector.port("crypto"))


def test_alarms_survive_outage_and_kill_9_and_arrive_once_each(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A receiver takes one alarm, then goes down (its port closed): five more alarms stay
    pending (retried, listed by the API and `collector alarms --pending`); the collector
    is killed with SIGKILL and started again; once the receiver listens on its port again,
    each alarm arrives exactly once by webhook-id, signed, and all end `delivered`."""
    hook = new_webhook()
    collector = new_collector(env={"LOG_SECRET": SECRET}, config=CRYPTO_LISTENER + f"""
[app:shop]
alarm = hook webhook:{hook.url}/hook;secret={HOOK_SECRET};timeout=2
log-alarm = hook ^order \\d+ failed
alarm-backoff = 0.2
alarm-max-backoff = 1
alarm-retries = 1000
""")
    collector.start()
    ship(collector, "order 0 failed")
    (before,) = wait_for(hook.accepted, 10, "the first alarm delivered")
    hook.stop()
    ship(collector, *(f"order {n} failed" for n in range(1, 6)), "order 6 shipped")

    def retried() -> list[dict[str, Any]] | None:
        pending = alarms(collector, "state=pending")
        return pending if len(pending) == 5 and all(
            e["attempts"] >= 2 for e in pending) else None

    pending = wait_for(retried, 20, "five alarms pending after failed attempts")
    ids = {e["id"] for e in pending}
    assert sorted(e["message"] for e in pending) == [f"order {n} failed" for n in range(1, 6)]
    assert all("Connect" in (e["last_error"] or "") for e in pending), pending[0]
    listed = collector.cli("alarms", "--pending")
    assert listed.returncode == 0, listed.stderr
    assert {m for line in listed.stdout.splitlines() if "  pending  " in line
            for m in re.findall(r"\bmsg_[0-9a-f]+", line)} == ids

    collector.kill9()
    collector.start()
    # Still there after the crash, still pending.
    assert {e["id"] for e in alarms(collector, "state=pending")} == ids

    hook.start()  # the same port
    wait_for(lambda: set(hook.accepted_ids()) == ids | {before.webhook_id}, 20,
             "every alarm at the receiver")
    delivered = wait_alarms(collector, "state=delivered", 6, "all six delivered")
    assert alarms(collector, "state=pending") == []
    assert {e["id"] for e in delivered} == ids | {before.webhook_id}
    assert all(e["outcome"] == "HTTP 200" for e in delivered)
    assert all(e["attempts"] >= 3 for e in delivered if e["id"] in ids)
    # Exactly once each: one request per id, and no request without one of those ids.
    assert hook.accepted_ids() == Counter(dict.fromkeys(ids | {before.webhook_id}, 1))
    assert len(hook.requests) == 6
    for request in hook.requests:
        assert verify_signature(HOOK_SECRET, request)
        assert request.json()["id"] == request.webhook_id
    metrics = collector.metrics()
    # This process's count: the five sent after the restart.
    assert metrics['collector_alarms_delivered_total{alarm="hook",app="shop",'
                   'plugin="webhook"}'] == 5
    # A filter given before the subcommand holds (it used to be reset by `list`).
    assert collector.cli("alarms", "--pending", "list").stdout == ""


def test_dead_letters_are_listed_and_retried_after_the_fix(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """`alarm-retries = 2`: an alarm to a receiver answering 500 and one to a receiver too
    slow for `timeout` each become a dead letter after two attempts; `collector alarms
    --dead` lists both; once the receivers are fixed, `collector alarms retry --dead`
    delivers each, with the same webhook-id on every attempt."""
    broken = new_webhook(status=500)
    slow = new_webhook(delay=1.0)
    collector = new_collector(env={"LOG_SECRET": SECRET}, config=CRYPTO_LISTENER + f"""
[app:shop]
alarm = broken webhook:{broken.url}/hook;secret={HOOK_SECRET}
alarm = slow webhook:{slow.url}/hook;secret={HOOK_SECRET};timeout=0.3
log-alarm = broken,slow ^payment gateway down
alarm-backoff = 0.1
alarm-retries = 2
""")
    collector.start()
    ship(collector, "payment gateway down")

    dead = wait_alarms(collector, "state=dead", 2, "two dead letters", 15)
    by_alarm = {e["alarm"]: e for e in dead}
    assert by_alarm["broken"]["attempts"] == by_alarm["slow"]["attempts"] == 2
    assert by_alarm["broken"]["last_error"] == "HTTP 500"
    assert "Timeout" in by_alarm["slow"]["last_error"]
    assert [r.webhook_id for r in broken.requests] == [by_alarm["broken"]["id"]] * 2
    listed = collector.cli("alarms", "--dead")
    assert listed.returncode == 0, listed.stderr
    heads = [line for line in listed.stdout.splitlines() if "  dead  " in line]
    assert len(heads) == 2
    for entry in dead:
        assert any(entry["id"] in line and f"shop/{entry['alarm']}" in line
                   for line in heads), listed.stdout
    assert "[HTTP 500]" in listed.stdout

    broken.status = 200
    slow.delay = 0.0
    retried = collector.cli("alarms", "retry", "--dead")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith("2 alarm(s) queued for delivery again")
    assert {line.strip() for line in retried.stdout.splitlines()[1:]} == {
        e["id"] for e in dead}

    delivered = wait_alarms(collector, "state=delivered", 2, "both delivered after the retry")
    assert {e["id"]: e["attempts"] for e in delivered} == {e["id"]: 1 for e in dead}
    assert broken.accepted_ids() == Counter({by_alarm["broken"]["id"]: 1})
    assert [r.status for r in broken.requests] == [500, 500, 200]
    # The slow receiver took every attempt (too late for the first two): same id each time.
    wait_for(lambda: len(slow.requests) == 3, 5, "the slow receiver's three requests")
    assert {r.webhook_id for r in slow.requests} == {by_alarm["slow"]["id"]}
    assert alarms(collector, "state=dead") == []
    again = collector.cli("alarms", "retry", "--dead")
    assert again.stdout.startswith("0 alarm(s) queued")


TEST_CONFIG = """
[collector]
data-dir = {data}

[listener:crypto]
udp = 127.0.0.1:9
format = crypto
secret = never-used

[app:shop]
alarm = hook webhook:{url}/hook
alarm = page cmd:touch {marker}
log-alarm = hook HTTP/1\\.[01] 5\\d\\d
alarm-segfault = hook,page
alarm-freq = 3
"""
REQUEST = ("[pid: 41|app: 0|req: {n}/{n}] 10.0.0.1 () {{24 vars in 250 bytes}} "
           "[Wed Nov 25 09:31:31 2026] GET {path} => generated 21 bytes in 3 msecs "
           "(HTTP/1.1 {status}) 1 headers in 45 bytes (1 switches on core 0)")
SAMPLE = "\n".join([
    REQUEST.format(n=1, path="/cart", status=502),
    REQUEST.format(n=2, path="/ok", status=200),
    REQUEST.format(n=1, path="/cart", status=502),
    "!!! uWSGI process {pid} got Segmentation Fault !!!",
    "*** backtrace of {pid} ***",
    "uwsgi(uwsgi_backtrace+0x2f) [0x55e93b6f49df]",
    "uwsgi(uwsgi_segfault+0x23) [0x55e93b6f4db3]",
    "*** end of backtrace ***",
]) + "\n"


def test_alarms_test_command_prints_what_would_fire_and_sends_nothing(
        tmp_path: Path, new_webhook: Callable[..., WebhookServer]) -> None:
    """`collector alarms test --config FILE --app shop < lines.txt`: the 5xx line fires
    once (its repeat is suppressed by alarm-freq), the segfault with its backtrace fires
    both its alarms; no request reaches the webhook, no command runs, no outbox is made;
    `--json` prints the webhook payloads."""
    hook = new_webhook()
    marker = tmp_path / "command-ran"
    config = tmp_path / "collector.ini"
    config.write_text(TEST_CONFIG.format(data=tmp_path / "data", url=hook.url,
                                         marker=marker))
    lines = SAMPLE.replace("{pid}", "4242")

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "collector", "alarms", "test", "--config", str(config),
             "--app", "shop", *extra], input=lines, capture_output=True, text=True,
            timeout=30, check=False)

    done = run()
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    fired = [line for line in out if line.startswith("fire  ")]
    # The repeat held back is counted in the hook's next notification.
    assert fired == ["fire  hook (webhook)  log  web.1",
                     "fire  hook (webhook)  segfault  web.1  +1 suppressed before it",
                     "fire  page (cmd)  segfault  web.1"]
    assert "    " + lines.splitlines()[0] in out
    assert "    *** end of backtrace ***" in out
    assert out[-1] == "-- 8 lines, 3 notification(s), suppressed by alarm-freq: hook: 1 --"

    as_json = run("--json", "--source", "web.7")
    assert as_json.returncode == 0, as_json.stderr
    payloads = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(p["alarm"], p["condition"], p["source"]) for p in payloads] == [
        ("hook", "log", "web.7"), ("hook", "segfault", "web.7"), ("page", "segfault", "web.7")]
    assert payloads[1]["message"].endswith("*** end of backtrace ***")
    assert payloads[1]["facts"]["pid"] == 4242

    assert hook.requests == []
    assert not marker.exists()
    assert not (tmp_path / "data").exists()
