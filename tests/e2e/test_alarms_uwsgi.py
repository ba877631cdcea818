"""Alarms raised by a real uWSGI shipping over `logger = crypto:` to a real collector.

A worker that segfaults (mail through a real aiosmtpd, a signed webhook to a real HTTP
server), a listen queue that fills (a command), `log-alarm` on 5xx lines with a
`not-log-alarm` in front of it, and repeats within `alarm-freq` held back and counted.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.alarms_api import alarms, wait_alarms
from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.smtp import SmtpServer
from tests.support.uwsgi_proc import UwsgiProcess
from tests.support.webhook import WebhookServer, verify_signature

pytestmark = [pytest.mark.e2e, pytest.mark.uwsgi]

SECRET = "a-secret-that-is-thirty-two-byte"
HOOK_SECRET = "whsec_" + base64.b64encode(b"uwsgi-alarm-e2e-signing-key!").decode()
LISTENER = """
[listener:dynos]
udp = 127.0.0.1:{port:dynos}
format = crypto
algo = aes-256-cbc
secret = $(LOG_SECRET)
"""
PAYLOAD_FIELDS = {"id", "type", "alarm", "app", "source", "condition", "message", "facts",
                  "first_seen", "last_seen", "count", "suppressed", "status", "group",
                  "alert"}


def start_pair(new_collector: Callable[..., CollectorProcess],
               new_uwsgi: Callable[..., UwsgiProcess], app_section: str,
               uwsgi_lines: tuple[str, ...] = (), processes: int = 1
               ) -> tuple[CollectorProcess, UwsgiProcess]:
    """A collector with `app_section` for app `shop`, and a uWSGI logging to it as
    shop/web.1 through the crypto logger."""
    collector = new_collector(config=LISTENER + "\n[app:shop]\n" + app_section,
                              env={"LOG_SECRET": SECRET})
    collector.start()
    uwsgi = new_uwsgi(processes=processes, lines=[
        f"logger = crypto:addr=127.0.0.1:{collector.port('dynos')},algo=aes-256-cbc,"
        f"secret={SECRET},prefix=shop/web.1", *uwsgi_lines])
    uwsgi.start()
    return collector, uwsgi


def logs(collector: CollectorProcess, regex: str) -> list[dict[str, Any]]:
    """Stored records of app shop whose line matches `regex`, oldest first."""
    found: list[dict[str, Any]] = collector.get(
        f"/v1/logs?app=shop&limit=1000&regex={quote(regex)}")["records"]
    return found


def wait_logs(collector: CollectorProcess, regex: str, count: int, what: str,
              timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll until exactly `count` stored lines (kind "log") match `regex`; return them."""
    def check() -> list[dict[str, Any]] | None:
        found = [r for r in logs(collector, regex) if r["kind"] == "log"]
        return found if len(found) == count else None

    return wait_for(check, timeout, what)


def metric(collector: CollectorProcess, name: str, **labels: str) -> float:
    """The value of one series (0 when absent)."""
    inside = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return collector.metrics().get(f"{name}{{{inside}}}", 0.0)


def test_segfault_backtrace_reaches_mail_and_signed_webhook(
        new_collector: Callable[..., CollectorProcess],
        new_uwsgi: Callable[..., UwsgiProcess],
        new_webhook: Callable[..., WebhookServer], smtp_server: SmtpServer) -> None:
    """A worker dies of SIGSEGV inside ctypes: one alarm carrying the segfault line and
    the whole backtrace reaches a real SMTP server as mail (headers from the alarm line,
    the source's preceding lines as context) and a real HTTP server as a webhook whose
    Standard Webhooks signature verifies; both end `delivered` in /v1/alarms."""
    hook = new_webhook()
    mail_alarm = (f"mail:smtp://127.0.0.1:{smtp_server.port};"
                  "mail_to=ops@example.com,dev@example.com;mail_from=collector@example.com;"
                  "subject=[shop] segfault")
    collector, uwsgi = start_pair(new_collector, new_uwsgi, f"""
alarm = mailme {mail_alarm}
alarm = hook webhook:{hook.url}/uwsgi;secret={HOOK_SECRET}
alarm-segfault = mailme,hook
""")
    assert uwsgi.get("/say/about-to-crash") == 200
    assert uwsgi.get("/segfault") == 0  # the connection dies with the worker

    (request,) = wait_for(lambda: hook.requests, 20, "the segfault webhook")
    (mail,) = wait_for(lambda: smtp_server.mails, 20, "the segfault mail")

    # The webhook: signed, its id in the header and the body, every documented field.
    assert request.path == "/uwsgi"
    assert request.headers["content-type"] == "application/json"
    assert verify_signature(HOOK_SECRET, request)
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
    payload = request.json()
    assert set(payload) == PAYLOAD_FIELDS
    assert payload["id"] == request.webhook_id
    assert (payload["alarm"], payload["app"], payload["source"], payload["condition"]) == (
        "hook", "shop", "web.1", "segfault")
    lines = payload["message"].split("\n")
    pid = payload["facts"]["pid"]
    assert lines[0] == f"!!! uWSGI process {pid} got Segmentation Fault !!!"
    assert lines[1] == f"*** backtrace of {pid} ***"
    assert lines[-1] == "*** end of backtrace ***"
    assert any("uwsgi_backtrace" in frame for frame in lines[2:-1])
    assert payload["facts"] == {"pid": pid, "signal": "Segmentation Fault",
                                "frames": len(lines) - 3, "complete": True}
    assert payload["count"] == 1
    assert payload["suppressed"] == 0
    assert payload["first_seen"] <= payload["last_seen"] <= time.time()

    # The mail: envelope and headers from the alarm line; the message, then context.
    assert mail.mail_from == "collector@example.com"
    assert mail.rcpt_tos == ("ops@example.com", "dev@example.com")
    assert mail.message["From"] == "collector@example.com"
    assert mail.message["To"] == "ops@example.com, dev@example.com"
    assert mail.message["Subject"] == "[shop] segfault"
    body = mail.body
    assert payload["message"] in body
    message_end = body.index("*** end of backtrace ***")
    context = body[message_end:]
    assert "about-to-crash" in context  # the source's lines just before the crash
    assert "GET /say/about-to-crash" in context
    assert mail.message["X-Alarm-Id"] != payload["id"]  # one notification per alarm

    entries = wait_alarms(collector, "state=delivered", 2, "both alarms delivered")
    assert len(alarms(collector)) == 2
    assert sorted((e["alarm"], e["plugin"], e["condition"]) for e in entries) == [
        ("hook", "webhook", "segfault"), ("mailme", "mail", "segfault")]
    assert {e["id"] for e in entries} == {payload["id"], mail.message["X-Alarm-Id"]}
    assert len(smtp_server.mails) == 1
    assert len(hook.requests) == 1


RECORDER = """#!/bin/sh
# An alarm command: appends its alarm environment and the message from stdin.
{ env | grep '^ALARM_' | sort; echo '--- message'; cat; echo; echo '--- end'; } >> "$1"
"""


def recorded(path: Path) -> list[dict[str, str]]:
    """The runs of the recorder command: environment and message of each."""
    if not path.exists():
        return []
    runs: list[dict[str, str]] = []
    for chunk in path.read_text().split("--- end\n"):
        if not chunk.strip():
            continue
        env_text, _, message = chunk.partition("--- message\n")
        run = dict(line.split("=", 1) for line in env_text.splitlines())
        run["message"] = message.rstrip("\n")
        runs.append(run)
    return runs


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """(the recorder script, the file it appends to)."""
    script = tmp_path / "record-alarm.sh"
    script.write_text(RECORDER)
    script.chmod(0o755)
    return script, tmp_path / "alarm-runs.txt"


def fill_listen_queue(port: int, connections: int) -> list[socket.socket]:
    """Start `connections` connections at once without waiting (non-blocking): the
    queue takes a few, the rest hang in SYN until closed."""
    opened: list[socket.socket] = []
    for _ in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        opened.append(sock)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            continue
    return opened


@pytest.fixture
def burst() -> Iterator[list[socket.socket]]:
    """Sockets a test opens; closed at teardown."""
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def test_full_listen_queue_runs_the_command_once_per_episode(
        new_collector: Callable[..., CollectorProcess],
        new_uwsgi: Callable[..., UwsgiProcess], recorder: tuple[Path, Path],
        burst: list[socket.socket]) -> None:
    """One worker stuck in a slow request, `listen = 2`, a burst of connections: uWSGI
    logs its listen queue full every second for longer than alarm-freq; the backlog
    alarm runs its command exactly once (message on stdin, facts in the environment),
    the repeats are counted as suppressed, and /v1/alarms has the socket and queue/max."""
    script, runs_file = recorder
    collector, uwsgi = start_pair(new_collector, new_uwsgi, f"""
alarm = page cmd:{script} {runs_file}
alarm-backlog = page
; shorter than the episode, so a fixed window would page twice
alarm-freq = 3
""", uwsgi_lines=("listen = 2",))
    stuck = threading.Thread(target=uwsgi.get, args=("/sleep/5",), daemon=True)
    stuck.start()
    time.sleep(0.3)  # for the slow request to reach the only worker
    burst.extend(fill_listen_queue(uwsgi.port, 12))
    full = r"listen queue of socket .* full"
    wait_for(lambda: len(logs(collector, full)) >= 4, 15, "four queue-full lines")
    stuck.join(10)
    for sock in burst:
        sock.close()

    # Every queue-full line the collector stored was either the one notification or one
    # held back by alarm-freq (read until a line arriving in between no longer skews it).
    def accounted() -> tuple[int, float, float] | None:
        stored = len(logs(collector, full))
        fired = metric(collector, "collector_alarms_fired_total", app="shop", alarm="page",
                       plugin="cmd", condition="backlog")
        held = metric(collector, "collector_alarms_suppressed_total", app="shop",
                      alarm="page", plugin="cmd")
        return (stored, fired, held) if fired + held == stored else None

    stored, fired, held = wait_for(accounted, 10, "every queue-full line accounted for")
    lines = logs(collector, full)
    assert lines[-1]["received_at"] - lines[0]["received_at"] >= 3  # longer than the window
    assert fired == 1
    assert held == stored - 1

    (run,) = wait_for(lambda: recorded(runs_file), 10, "the alarm command to run")
    socket_name = f"127.0.0.1:{uwsgi.port}"
    assert (run["ALARM_NAME"], run["ALARM_APP"], run["ALARM_SOURCE"],
            run["ALARM_CONDITION"]) == ("page", "shop", "web.1", "backlog")
    assert run["message"].startswith(f'listen queue of socket "{socket_name}" (fd: ')

    (entry,) = wait_for(lambda: alarms(collector, "state=delivered"), 10,
                        "the alarm delivered")
    assert entry["id"] == run["ALARM_ID"]
    assert entry["outcome"] == "exit 0"
    facts = entry["facts"]
    assert (facts["socket"], facts["max"]) == (socket_name, 2)
    assert facts["queue"] in (2, 3)  # Linux queues listen + 1 connections
    assert run["message"] == entry["message"] == (
        f'listen queue of socket "{socket_name}" (fd: {facts["fd"]}) full !!! '
        f'({facts["queue"]}/2)')
    assert len(recorded(runs_file)) == 1


def test_log_alarm_on_5xx_and_not_log_alarm_in_file_order(
        new_collector: Callable[..., CollectorProcess],
        new_uwsgi: Callable[..., UwsgiProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """Rules run in file order: a `log-alarm` before the `not-log-alarm` still fires for
    the quiet request; the `not-log-alarm` stops the 5xx rule after it for that request
    only; another 5xx fires, a 404 does not; the `log:` alarm's own line (which contains
    the matched text) never alarms again."""
    hook = new_webhook()
    collector, uwsgi = start_pair(new_collector, new_uwsgi, f"""
alarm = hook webhook:{hook.url}/hook;secret={HOOK_SECRET}
alarm = audit log:quiet request
log-alarm = audit \\?quiet=1
not-log-alarm = hook quiet
log-alarm = hook HTTP/1\\.[01] 5\\d\\d
""", processes=2)
    assert uwsgi.get("/status/503?quiet=1") == 503
    assert uwsgi.get("/status/500") == 500
    assert uwsgi.get("/status/404") == 404

    (request,) = wait_for(lambda: hook.requests, 15, "the 5xx webhook")
    payload = request.json()
    assert verify_signature(HOOK_SECRET, request)
    assert payload["condition"] == "log"
    assert "GET /status/500 " in payload["message"]
    assert "(HTTP/1.1 500)" in payload["message"]
    assert payload["facts"] == {"regex": ["HTTP/1\\.[01] 5\\d\\d"]}

    # Every request line is stored, so the engine has seen all three of them.
    wait_logs(collector, r"GET /status/", 3, "the request lines")
    (audit,) = wait_for(lambda: [r for r in logs(collector, r"^\[uwsgi-alarm\] ALARM:")
                                 if r["kind"] == "alarm"], 10, "the log: alarm line")
    assert audit["line"].startswith("[uwsgi-alarm] ALARM: quiet request [pid: ")
    assert "GET /status/503?quiet=1 " in audit["line"]
    entries = wait_alarms(collector, "state=delivered", 2, "both alarms delivered")
    # Both lines may reach the engine in one batch, with one creation time: compare as sets.
    assert sorted((e["alarm"], "?quiet=1" in e["message"]) for e in entries) == [
        ("audit", True), ("hook", False)]
    metrics = collector.metrics()
    fired = {k: v for k, v in metrics.items() if k.startswith("collector_alarms_fired_total")}
    assert fired == {
        'collector_alarms_fired_total{alarm="audit",app="shop",condition="log",'
        'plugin="log"}': 1.0,
        'collector_alarms_fired_total{alarm="hook",app="shop",condition="log",'
        'plugin="webhook"}': 1.0}
    assert len(hook.requests) == 1


def test_repeats_within_alarm_freq_are_held_back_and_counted(
        new_collector: Callable[..., CollectorProcess],
        new_uwsgi: Callable[..., UwsgiProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """Three identical lines at once send one webhook; the same line after the window
    sends another that says two were suppressed (payload and /v1/alarms alike)."""
    hook = new_webhook()
    collector, uwsgi = start_pair(new_collector, new_uwsgi, f"""
alarm = hook webhook:{hook.url}/hook;secret={HOOK_SECRET}
log-alarm = hook ^kaboom$
alarm-freq = 2
""")
    for _ in range(3):
        assert uwsgi.get("/say/kaboom") == 200
    booms = wait_logs(collector, "^kaboom$", 3, "three kaboom lines")
    assert booms[-1]["received_at"] - booms[0]["received_at"] < 2
    wait_for(lambda: hook.requests, 10, "the first webhook")
    assert metric(collector, "collector_alarms_suppressed_total", app="shop", alarm="hook",
                  plugin="webhook") == 2

    # Past the window (counted from the last repeat, on the collector's clock), once more.
    wait_for(lambda: time.time() > booms[-1]["received_at"] + 2.1, 5, "the window to pass")
    assert uwsgi.get("/say/kaboom") == 200
    wait_for(lambda: len(hook.requests) == 2, 10, "the second webhook")
    payloads = [r.json() for r in hook.requests]
    assert [(p["message"], p["suppressed"], p["count"]) for p in payloads] == [
        ("kaboom", 0, 1), ("kaboom", 2, 1)]
    assert all(verify_signature(HOOK_SECRET, r) for r in hook.requests)
    entries = wait_alarms(collector, "state=delivered", 2, "both delivered")
    assert [e["suppressed"] for e in entries] == [0, 2]
    assert [e["id"] for e in entries] == [p["id"] for p in payloads]
