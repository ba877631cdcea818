"""A listener with `receivers = 2`: two receiver processes on one port (SO_REUSEPORT)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_cluster import NODE, wait_lines
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
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
SENDERS = 16
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


def send_round(port: int, tag: str, pad: int = 0) -> set[str]:
    """PER_SENDER lines (`pad` bytes longer) from each of SENDERS sockets (so the kernel
    spreads them over the receivers); the lines sent."""
    sent: set[str] = set()
    for sender in range(SENDERS):
        lines = [f"{tag} sender {sender} line {i} {'x' * pad}".rstrip()
                 for i in range(PER_SENDER)]
        send(crypto_lines(lines, SECRET), port)
        sent.update(lines)
    return sent


def stored(collector: CollectorProcess, tag: str) -> list[str]:
    """The stored lines carrying `tag` (repeats included)."""
    records = collector.get("/v1/logs?app=shop&limit=10000")["records"]
    return [r["line"] for r in records if r["line"].startswith(tag + " ")]


RELOADS_OK = 'collector_config_reloads_total{result="ok"}'
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


def count_stored(collector: CollectorProcess) -> int:
    """Lines committed to the store."""
    return int(collector.metrics().get("collector_store_lines_committed_total", 0))


def test_a_stalled_main_process_makes_the_kernel_drop_not_the_receivers_grow(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """While the main process is stopped (SIGSTOP) the receivers' pipes fill, they stop
    reading, and the kernel drops the rest (counted per socket, summed in /metrics);
    once it runs again, every datagram is either received or a kernel drop, and every
    one received is accepted and stored."""
    collector = new_collector(config=CONFIG + "rcvbuf = 256k\n")
    collector.start()
    wait_for(lambda: two_receivers(collector), 10, "two receiver processes")
    assert collector.process is not None
    port = collector.port("app")
    # 9,600 datagrams of about 1 KiB: about 10 MiB, against 1 MiB of pipe and 512 KiB of
    # kernel buffer per receiver.
    rounds = 12
    os.kill(collector.process.pid, signal.SIGSTOP)
    try:
        sent = sum(len(send_round(port, f"flood{i}", pad=1000)) for i in range(rounds))
    finally:
        os.kill(collector.process.pid, signal.SIGCONT)
    kernel = 'collector_udp_kernel_drops_total{listener="app"}'
    metrics = collector.wait_metrics(lambda m: m[RECEIVED] + m.get(kernel, 0) == sent, 30,
                                     "every datagram received or dropped by the kernel")
    assert metrics.get(kernel, 0) > 0, "the pipes never filled"
    assert metric(metrics, "collector_datagrams_accepted_total") == metrics[RECEIVED]
    wait_for(lambda: count_stored(collector) == metrics[RECEIVED], 20, "all received stored")


def test_reload_replaces_the_receivers_and_a_new_count_reopens_the_port(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """SIGHUP with a rotated secret restarts both receivers on their sockets with it (the
    new secret's lines are stored, the old one's dropped); a reload to `receivers = 1`
    closes the two sockets and receives in the main process again."""
    collector = new_collector(config=CONFIG)
    collector.start()
    old = wait_for(lambda: two_receivers(collector), 10, "two receiver processes")
    assert collector.process is not None
    collector.config = CONFIG.replace(SECRET, "rotated-secret")
    collector.write_config()
    collector.process.send_signal(signal.SIGHUP)
    collector.wait_metrics(lambda m: m.get(RELOADS_OK) == 1, 20, "the reload applied")
    wait_for(lambda: (p if (p := two_receivers(collector)) and not set(p) & set(old)
                      else None), 20, "two new receivers")
    port = collector.port("app")
    for sender in range(SENDERS):
        send(crypto_lines([f"rotated {sender}"], "rotated-secret"), port)
        send(crypto_lines([f"stale {sender}"], SECRET), port)
    wait_for(lambda: len(stored(collector, "rotated")) == SENDERS, 20, "rotated lines")
    assert stored(collector, "stale") == []

    collector.config = CONFIG.replace(SECRET, "rotated-secret").replace(
        "receivers = 2", "receivers = 1")
    collector.write_config()
    collector.process.send_signal(signal.SIGHUP)
    collector.wait_metrics(lambda m: m.get(RELOADS_OK) == 2, 20, "the second reload")
    wait_for(lambda: not receiver_pids(collector) or None, 20, "the receivers gone")
    send(crypto_lines(["single again"], "rotated-secret"), port)
    wait_for(lambda: stored(collector, "single"), 20, "a line through the main process")


def test_cluster_mode_counts_lines_from_two_receivers_once_safe(
        new_nats: Callable[..., NatsCluster],
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A cluster node with receivers = 2 publishes what both receivers decode, counts it
    accepted once JetStream acknowledged it, and materializes every line once."""
    nats = new_nats(1)
    config = NODE.format(nats=nats.urls[0], node="a", replicas=1, extra="")
    collector = new_collector(config=config + "receivers = 2\n")
    collector.start(timeout=40.0)
    wait_for(lambda: two_receivers(collector), 10, "two receiver processes")
    sent: set[str] = set()
    for sender in range(SENDERS):
        batch = [f"cluster {sender} {i}" for i in range(20)]
        send((line.encode() for line in batch), collector.port("plain"))
        sent.update(batch)
    metrics = collector.wait_metrics(
        lambda m: m.get('collector_lines_accepted_total{listener="plain"}') == len(sent), 30,
        "every line accepted (acknowledged)")
    assert metrics.get("collector_cluster_acked_lines_total", 0) >= len(sent)
    spread_plain = [metrics.get(f'collector_listener_receiver_datagrams_total{{'
                                f'listener="plain",receiver="{i}"}}', 0) for i in range(2)]
    assert all(count > 0 for count in spread_plain), spread_plain
    got = wait_lines(collector, len(sent), 30.0)
    assert sorted(r["line"] for r in got) == sorted(sent)


def test_a_reload_while_a_receiver_restarts_leaves_one_receiver_per_socket(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A receiver killed just before a SIGHUP: the reload starts its replacement and the
    pending restart then starts none, so two receivers run (not three) and each line is
    stored once."""
    collector = new_collector(config=CONFIG)
    collector.start()
    pids = wait_for(lambda: two_receivers(collector), 10, "two receiver processes")
    assert collector.process is not None
    collector.config = CONFIG.replace("app = shop", "app = shop\nmax-skew = 10m")
    collector.write_config()
    os.kill(pids[0], signal.SIGKILL)
    collector.process.send_signal(signal.SIGHUP)
    collector.wait_metrics(lambda m: m.get(RELOADS_OK) == 1, 20, "the reload applied")
    # Past the restart's delay (0.2 s): a second receiver for one socket would show now.
    time.sleep(1.5)
    running = receiver_pids(collector)
    assert len(running) == 2, running
    assert not set(running) & set(pids)
    sent = send_round(collector.port("app"), "after")
    wait_for(lambda: len(stored(collector, "after")) >= len(sent), 20, "lines stored")
    time.sleep(0.5)
    assert sorted(stored(collector, "after")) == sorted(sent)
