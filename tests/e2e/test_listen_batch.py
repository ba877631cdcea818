"""A real collector reading bursts from several senders at once, many datagrams per
wake-up: each datagram arrives once, in order per sender, and the counters add up."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.send import send

pytestmark = pytest.mark.e2e

CONFIG = """
[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
app = batch
max-datagram = 200
"""
SENDERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PER_SENDER = 3000


def test_bursts_from_several_senders_arrive_once_each_in_order(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Three senders send 3,000 datagrams each at once (plus one oversize each): every
    datagram is counted read or dropped by the kernel, every one read is stored once, in
    its sender's order, and /metrics agrees with what was sent."""
    collector = new_collector(config=CONFIG)
    collector.start()
    port = collector.port("plain")

    def burst(host: str) -> None:
        lines = [f"batch/{host}:seq {i}".encode() for i in range(PER_SENDER)]
        lines.insert(PER_SENDER // 2, b"x" * 201)
        send(lines, port, source=host, pause_every=1000)

    threads = [threading.Thread(target=burst, args=(host,)) for host in SENDERS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    sent = len(SENDERS) * (PER_SENDER + 1)
    received = 'collector_datagrams_received_total{format="socket",listener="plain"}'
    kernel = 'collector_udp_kernel_drops_total{listener="plain"}'
    metrics = collector.wait_metrics(
        lambda m: m.get(received, 0) + m.get(kernel, 0) == sent, 30,
        "every datagram read or dropped by the kernel")
    read = metrics[received]
    oversize = metrics['collector_datagrams_dropped_total{listener="plain",reason="oversize"}']
    accepted = metrics['collector_datagrams_accepted_total{listener="plain"}']
    assert oversize == len(SENDERS) or metrics[kernel] > 0
    assert accepted == read - oversize
    assert metrics['collector_lines_accepted_total{listener="plain"}'] == accepted
    stored = 0
    for host in SENDERS:
        records = collector.get(f"/v1/logs?app=batch&source={host}&after=0&limit=10000"
                                )["records"]
        seqs = [int(r["line"].split()[1]) for r in records]
        ids = [r["id"] for r in records]
        assert ids == sorted(set(ids))
        assert seqs == sorted(set(seqs)), f"{host}: out of order or repeated"
        stored += len(seqs)
        if metrics[kernel] == 0:
            assert seqs == list(range(PER_SENDER))
    assert stored == accepted
