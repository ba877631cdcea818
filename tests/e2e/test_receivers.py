"""A listener with `receivers = 2`: two receiver processes on one port (SO_REUSEPORT)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.send import crypto_lines, send

pytestmark = pytest.mark.e2e

SECRET = "receivers-secret"
CONFIG = f"""
[listener:app]
udp = 127.0.0.1:{{port:app}}
format = crypto
secret = {SECRET}
app = shop
receivers = 2
"""
SENDERS = 8
PER_SENDER = 50


def receiver_pids(collector: CollectorProcess) -> list[int]:
    """The collector's receiver processes (its children running collector.listen.receiver)."""
    assert collector.process is not None
    parent = collector.process.pid
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"collector.listen.receiver" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def two_receivers(collector: CollectorProcess, not_pid: int = 0) -> list[int] | None:
    """The two receivers' pids once both run (and `not_pid` is not one of them)."""
    pids = receiver_pids(collector)
    return pids if len(pids) == 2 and not_pid not in pids else None


def metric(metrics: dict[str, float], name: str) -> float:
    """The `app` listener's value of `name` (0 when absent)."""
    return metrics.get(f'{name}{{listener="app"}}', 0.0)


def send_round(port: int, tag: str) -> set[str]:
    """PER_SENDER lines from each of SENDERS sockets (so the kernel spreads them over the
    receivers); the lines sent."""
    sent: set[str] = set()
    for sender in range(SENDERS):
        lines = [f"{tag} sender {sender} line {i}" for i in range(PER_SENDER)]
        send(crypto_lines(lines, SECRET), port)
        sent.update(lines)
    return sent


def stored(collector: CollectorProcess, tag: str) -> list[str]:
    """The stored lines carrying `tag` (repeats included)."""
    records = collector.get("/v1/logs?app=shop&limit=10000")["records"]
    return [r["line"] for r in records if r["line"].startswith(tag + " ")]


RECEIVED = 'collector_datagrams_received_total{format="crypto",listener="app"}'


def spread(metrics: dict[str, float]) -> list[float]:
    """Datagrams each of the two receivers handed over."""
    return [metrics.get(f'collector_listener_receiver_datagrams_total{{listener="app",'
                        f'receiver="{i}"}}', 0.0) for i in range(2)]


def test_two_receivers_store_every_line_once_and_survive_a_kill(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """With receivers = 2 the kernel spreads several sender sockets over both receivers,
    every line is stored exactly once and /metrics adds up over the receivers; a receiver
    killed with SIGKILL loses nothing counted accepted, is restarted (counted, logged
    once) while the other goes on, and every line sent after it is stored; shutdown ends
    the receivers."""
    collector = new_collector(config=CONFIG)
    collector.start()
    port = collector.port("app")
    pids = wait_for(lambda: two_receivers(collector), 10, "two receiver processes")
    sent = send_round(port, "first")
    total = len(sent)
    metrics = collector.wait_metrics(
        lambda m: metric(m, "collector_lines_accepted_total") >= total, 30,
        "every line accepted")
    wait_for(lambda: len(stored(collector, "first")) >= total, 20, "every line stored")
    assert sorted(stored(collector, "first")) == sorted(sent)
    assert metrics[RECEIVED] == total
    assert metric(metrics, "collector_datagrams_accepted_total") == total
    assert metric(metrics, "collector_lines_received_total") == total
    assert metric(metrics, "collector_listener_receiver_restarts_total") == 0
    # SENDERS sender sockets: all on one receiver has odds of 2 in 2**SENDERS.
    assert all(count > 0 for count in spread(metrics)), spread(metrics)
    assert sum(spread(metrics)) == total

    accepted_before = metric(metrics, "collector_datagrams_accepted_total")
    os.kill(pids[0], signal.SIGKILL)
    collector.wait_metrics(
        lambda m: metric(m, "collector_listener_receiver_restarts_total") == 1, 20,
        "the killed receiver counted as restarted")
    wait_for(lambda: two_receivers(collector, not_pid=pids[0]), 20,
             "a new receiver in the killed one's place")
    assert pids[1] in receiver_pids(collector)
    # What was counted accepted before the kill is still stored, and nothing twice.
    assert sorted(stored(collector, "first")) == sorted(sent)
    again = send_round(port, "second")
    after = collector.wait_metrics(
        lambda m: metric(m, "collector_datagrams_accepted_total")
        >= accepted_before + len(again), 30, "the second round accepted")
    wait_for(lambda: len(stored(collector, "second")) >= len(again), 20,
             "the second round stored")
    assert sorted(stored(collector, "second")) == sorted(again)
    assert after[RECEIVED] == metric(after, "collector_datagrams_accepted_total")
    assert collector.output().count("receiver_died") == 1

    running = receiver_pids(collector)
    assert collector.stop() == 0
    for pid in running:
        assert not Path(f"/proc/{pid}").exists(), f"receiver {pid} outlived the collector"
