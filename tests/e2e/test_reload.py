"""SIGHUP reload of a real collector: listeners opened, closed and retuned while an
unchanged one loses nothing; a new alarm rule fires on the next line; a broken config is
refused and the running one kept."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collector.config.model import Config, HttpConfig, StoreConfig
from collector.server.server import HangupLatch, serve
from tests.support.alarms_api import wait_alarms
from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_port, wait_for
from tests.support.send import send
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.e2e

UNIT = (Path(__file__).resolve().parents[2] / "deploy" / "collector"
        / "uwsgi-logship-collector.service")
RELOADS_OK = 'collector_config_reloads_total{result="ok"}'
RELOADS_FAILED = 'collector_config_reloads_total{result="failed"}'

STEADY = """
[listener:steady]
udp = 127.0.0.1:{port:steady}
format = socket
app = steady
"""


def before(hook: WebhookServer) -> str:
    """The first config: steady, old (to be removed), tuned (to be retuned), one rule."""
    return STEADY + f"""
[listener:old]
udp = 127.0.0.1:{{port:old}}
format = socket

[listener:tuned]
udp = 127.0.0.1:{{port:tuned}}
format = socket
app = first

[app:shop]
alarm = hook webhook:{hook.url}/hook;timeout=2
log-alarm = hook ^disk full
"""


def after(hook: WebhookServer) -> str:
    """The reloaded config: old gone, new added, tuned names another app, one more rule;
    steady is unchanged but now further down the file (other line numbers)."""
    return f"""
[listener:new]
udp = 127.0.0.1:{{port:new}}
format = socket

[listener:tuned]
udp = 127.0.0.1:{{port:tuned}}
format = socket
app = second

[app:shop]
alarm = hook webhook:{hook.url}/hook;timeout=2
log-alarm = hook ^disk full
log-alarm = hook ^out of memory
""" + STEADY


def records(collector: CollectorProcess, query: str) -> list[dict[str, Any]]:
    """GET /v1/logs?QUERY, up to 10000 records."""
    found: list[dict[str, Any]] = collector.get(f"/v1/logs?limit=10000&{query}")["records"]
    return found


class SteadySender:
    """Sends `steady/web.1:n N` to a port, one datagram about every millisecond, in a thread,
    until stopped (and never more than `limit` datagrams or `seconds` seconds)."""

    def __init__(self, port: int, limit: int = 20_000, seconds: float = 60.0) -> None:
        self.port = port
        self.limit = limit
        self.seconds = seconds
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-sender", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while (not self._stop.is_set() and self.sent < self.limit
                   and time.monotonic() < deadline):
                sock.sendto(b"steady/web.1:n %d" % self.sent, ("127.0.0.1", self.port))
                self.sent += 1
                time.sleep(0.001)

    def __enter__(self) -> SteadySender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def reloads(collector: CollectorProcess, result: str, count: int) -> dict[str, float]:
    """Wait until /metrics counts `count` reloads with `result`; return the metrics."""
    name = RELOADS_OK if result == "ok" else RELOADS_FAILED
    return collector.wait_metrics(lambda m: m.get(name) == count, 20,
                                  f"{count} {result} reload(s) counted")


def hangup(collector: CollectorProcess) -> None:
    """Send SIGHUP to the collector process."""
    assert collector.process is not None
    collector.process.send_signal(signal.SIGHUP)


def udp_port_bound(port: int) -> bool:
    """Whether some socket holds 127.0.0.1:`port` (or the wildcard), as the kernel lists
    it. Read, not probed: a probe that binds the port holds it for a moment, and a
    collector binding it then (a reload while the test polls) failed with "Address
    already in use"."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    with open("/proc/net/udp") as rows:
        next(rows)  # the header
        return any(row.split()[1] in wanted for row in rows)


def test_sighup_applies_listeners_and_rules_without_losing_a_line(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """While a sender keeps a steady stream on an unchanged listener, SIGHUP applies an
    edited file: a removed listener's port is closed, an added one receives, a retuned one
    keeps its port and tags lines with its new app, a new alarm rule fires on the next
    line, and the unchanged listener stored every line sent (none lost, none twice)."""
    hook = new_webhook()
    collector = new_collector(config=before(hook))
    collector.start()
    for name in ("steady", "old", "tuned"):
        assert udp_port_bound(collector.port(name))
    with SteadySender(collector.port("steady")) as sender:
        wait_for(lambda: sender.sent >= 200, 10, "the sender under way")
        collector.config = after(hook)
        collector.write_config()
        hangup(collector)
        reloads(collector, "ok", 1)
        sent_at_reload = sender.sent
        wait_for(lambda: sender.sent >= sent_at_reload + 200, 10, "lines after the reload")
    sent = sender.sent
    collector.wait_metrics(
        lambda m: m.get('collector_lines_accepted_total{listener="steady"}') == sent, 20,
        f"all {sent} steady lines accepted")
    steady = wait_for(lambda: (found if len(found := records(collector, "app=steady"))
                               >= sent else None), 20, "the steady lines stored")
    assert sorted(int(r["line"].split()[1]) for r in steady) == list(range(sent))

    assert not udp_port_bound(collector.port("old")), "the removed listener's port is open"
    send([b"newapp/web.1:hello new"], collector.port("new"))
    send([b"tuned line"], collector.port("tuned"))
    wait_for(lambda: records(collector, "app=newapp"), 10, "a line through the new listener")
    (tuned,) = wait_for(lambda: records(collector, "app=second"), 10,
                        "a line through the retuned listener")
    assert tuned["line"] == "tuned line"

    send([b"shop/web.1:out of memory in worker 3"], collector.port("new"))
    (fired,) = wait_for(hook.accepted, 10, "the new rule's alarm delivered")
    assert fired.json()["message"].startswith("out of memory")
    health = collector.get("/healthz")
    assert health["listeners"] == ["new", "tuned", "steady"]
    assert "config_reloaded" in collector.output()


def test_a_broken_config_is_refused_and_the_running_one_kept(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """SIGHUP with an error in the file logs reload_failed with the file, line and key,
    counts it, and changes nothing: the old listeners and rules keep working. A later
    SIGHUP with the error fixed applies the file."""
    hook = new_webhook()
    collector = new_collector(config=before(hook))
    collector.start()
    collector.config = before(hook) + "log-alarm = nosuch ^boom\n"
    path = collector.write_config()
    broken_line = path.read_text().splitlines().index("log-alarm = nosuch ^boom") + 1
    hangup(collector)
    reloads(collector, "failed", 1)
    output = collector.output()
    assert "reload_failed" in output
    assert f"{path}:{broken_line}: log-alarm: unknown alarm 'nosuch'" in output
    assert collector.process is not None
    assert collector.process.poll() is None
    send([b"shop/web.1:disk full on /var"], collector.port("old"))
    (fired,) = wait_for(hook.accepted, 10, "the running rule's alarm delivered")
    assert fired.json()["message"].startswith("disk full")
    assert records(collector, "app=shop")

    collector.config = after(hook)
    collector.write_config()
    hangup(collector)
    metrics = reloads(collector, "ok", 1)
    assert metrics[RELOADS_FAILED] == 1
    assert not udp_port_bound(collector.port("old"))


def test_restart_only_settings_are_named_and_the_rest_applied(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A changed [collector] setting (retention here) needs a restart: the reload logs
    reload_needs_restart with its key, keeps serving, and applies the listener change."""
    collector = new_collector(config=STEADY)
    collector.start()
    text = collector.config_path.read_text().replace("[collector]\n",
                                                     "[collector]\nretention = 1d\n", 1)
    collector.config_path.write_text(text + "\n[listener:more]\nudp = 127.0.0.1:"
                                     f"{collector.port('more')}\nformat = socket\n")
    hangup(collector)
    reloads(collector, "ok", 1)
    output = collector.output()
    assert "reload_needs_restart" in output
    assert "retention" in output.split("reload_needs_restart", 1)[1].splitlines()[0]
    assert udp_port_bound(collector.port("more"))


def test_sighups_during_a_burst_are_all_served(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Several SIGHUPs in a row never kill the collector, and the last one's file is the
    one that runs (a SIGHUP during a reload is kept and served after it)."""
    collector = new_collector(config=STEADY)
    collector.start()
    for _ in range(5):
        hangup(collector)
    collector.config = STEADY + """
[listener:late]
udp = 127.0.0.1:{port:late}
format = socket
"""
    collector.write_config()
    hangup(collector)
    wait_for(lambda: udp_port_bound(collector.port("late")), 20, "the last file applied")
    assert collector.process is not None
    assert collector.process.poll() is None
    assert collector.stop() == 0


def test_a_hangup_to_the_whole_process_group_spares_the_store_writer(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A SIGHUP sent to the collector's process group (a closed terminal, `timeout`,
    `kill -HUP -PGID`) reloads the collector and leaves its store writer alone: no writer
    dies, no restart is counted, and lines sent after it are stored."""
    collector = new_collector(config=STEADY, prefix=["setsid"])
    collector.start()
    assert collector.process is not None
    os.killpg(collector.process.pid, signal.SIGHUP)
    reloads(collector, "ok", 1)
    send([b"steady/web.1:after the hang-up"], collector.port("steady"))
    wait_for(lambda: collector.metrics().get("collector_store_lines_committed_total") == 1,
             10, "the line committed")
    assert collector.metrics()["collector_store_writer_restarts_total"] == 0
    assert "store_writer_died" not in collector.output()
    assert collector.stop() == 0


def test_systemctl_reload_reloads_and_keeps_the_service_running(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """The unit's ExecReload, run as systemd would (with $MAINPID), makes the collector
    reload its config; it keeps running (it used to exit 0, which Restart=on-failure
    does not restart)."""
    (command,) = [line.partition("=")[2] for line in UNIT.read_text().splitlines()
                  if line.startswith("ExecReload=")]
    collector = new_collector(config=STEADY)
    collector.start()
    assert collector.process is not None
    argv = [part.replace("$MAINPID", str(collector.process.pid))
            for part in shlex.split(command)]
    subprocess.run(argv, check=True, timeout=10)
    reloads(collector, "ok", 1)
    assert collector.process.poll() is None
    assert collector.get("/healthz")["listeners"] == ["steady"]


async def test_a_sighup_during_start_up_is_served_once_up(tmp_path: Path) -> None:
    """A SIGHUP that comes before the server runs (caught by the latch the CLI installs
    first) is neither fatal nor lost: the config is read again once the server is up."""
    config = Config(store=StoreConfig(data_dir=tmp_path / "data"),
                    http=HttpConfig(port=free_port()))
    reads: list[Config] = []

    def load() -> Config:
        reads.append(config)
        return config

    latch = HangupLatch.install()
    os.kill(os.getpid(), signal.SIGHUP)
    task = asyncio.create_task(serve(config, load, latch))
    try:
        async with asyncio.timeout(20):
            while not reads:
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(reads) == 1


def test_pending_alarms_survive_a_reload_and_are_delivered(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """An alarm waiting for a receiver that is down stays pending through a reload that
    changes the rules, and is delivered once the receiver is back."""
    hook = new_webhook(start=False)
    collector = new_collector(config=before(hook).replace(
        "timeout=2\n", "timeout=2\nalarm-backoff = 0.2\nalarm-max-backoff = 0.5\n"))
    collector.start()
    send([b"shop/web.1:disk full on /srv"], collector.port("steady"))
    (pending,) = wait_alarms(collector, "state=pending", 1, "the alarm pending")
    collector.config = after(hook).replace(
        "timeout=2\n", "timeout=2\nalarm-backoff = 0.2\nalarm-max-backoff = 0.5\n")
    collector.write_config()
    hangup(collector)
    reloads(collector, "ok", 1)
    hook.start()
    (delivered,) = wait_for(hook.accepted, 20, "the pending alarm delivered")
    assert delivered.webhook_id == pending["id"]
    wait_alarms(collector, "state=delivered", 1, "the alarm marked delivered")


def test_a_port_that_cannot_be_bound_refuses_the_whole_reload(
        new_collector: Callable[..., CollectorProcess],
        new_webhook: Callable[..., WebhookServer]) -> None:
    """A new listener on a port another process holds refuses the reload before anything
    changed: the removed listener still receives, the new rule does not apply yet."""
    hook = new_webhook()
    collector = new_collector(config=before(hook))
    collector.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", collector.port("new")))
        collector.config = after(hook)
        collector.write_config()
        hangup(collector)
        reloads(collector, "failed", 1)
    assert f"cannot listen on udp 127.0.0.1:{collector.port('new')}" in collector.output()
    assert udp_port_bound(collector.port("old"))
    send([b"shop/web.1:out of memory", b"shop/web.1:disk full"], collector.port("old"))
    (fired,) = wait_for(hook.accepted, 10, "the old rule's alarm")
    assert fired.json()["message"].startswith("disk full")
    assert collector.get("/healthz")["listeners"] == ["steady", "old", "tuned"]
