"""A real collector under a flood of distinct sources: the alarm state stays at its bounds
and the process's memory levels off."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logwire.logcrypto import encrypt, frame
from tests.support.collector_proc import CRYPTO_LISTENER, CollectorProcess
from tests.support.send import send

pytestmark = pytest.mark.e2e

SECRET = "memory-test-secret"
CONFIG = CRYPTO_LISTENER + """
[app:shop]
alarm = page cmd:true
alarm-silence = page 3600 ^s
log-alarm = page never-matches-xyzzy
"""
# alarms.bounds.DEFAULT.sources: context, silence and its regex cache hold this many.
BOUND = 10_000
PHASE = 30_000


def rss_kib(pid: int) -> int:
    """The process's resident set size, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def settled(collector: CollectorProcess) -> float:
    """Lines accepted, once the alarms engine has seen every one accepted (each line
    accepted is one new source, so past the bound each evicts one context)."""
    accepted = 'collector_lines_accepted_total{listener="crypto"}'
    evicted = 'collector_alarms_state_evicted_total{structure="context"}'
    metrics = collector.wait_metrics(
        lambda m: m.get(evicted, 0) >= m.get(accepted, 0) - BOUND, 60,
        "the alarms engine to see every accepted line")
    return metrics[accepted]


def flood(collector: CollectorProcess, first: int, count: int) -> None:
    """One line from each of `count` new sources s<first>..., sent in chunks that the
    collector takes in before the next (so a busy machine loses few to the kernel)."""
    now = time.time_ns() // 1000
    for start in range(first, first + count, 4000):
        datagrams = [encrypt(frame(f"hello from s{i}\n".encode(), now + i,
                                   f"shop/s{i}".encode()), SECRET, "aes-256-cbc")
                     for i in range(start, min(start + 4000, first + count))]
        send(datagrams, collector.port("crypto"))
        # Until the accepted count stops moving (bounded in time).
        deadline, last = time.monotonic() + 60, -1.0
        while (seen := settled(collector)) != last and time.monotonic() < deadline:
            last = seen
            time.sleep(0.2)


def test_memory_levels_off_under_a_flood_of_distinct_sources(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Four floods of 30,000 new sources each: the alarm state is at its bounds, and the
    process's RSS after 2N = 120,000 sources is that after N = 60,000, give or take
    generous slack (measured: 71.7, 76.0, 79.1, 79.1, 79.1, 79.1 MB after each flood)."""
    collector = new_collector(env={"LOG_SECRET": SECRET}, config=CONFIG)
    collector.start()
    assert collector.process is not None
    pid = collector.process.pid
    flood(collector, 0, PHASE)
    flood(collector, PHASE, PHASE)
    after_n = rss_kib(pid)
    flood(collector, 2 * PHASE, PHASE)
    flood(collector, 3 * PHASE, PHASE)
    after_2n = rss_kib(pid)
    metrics = collector.metrics()
    for structure in ("context", "silence", "silence_match"):
        assert metrics[f'collector_alarms_state_size{{structure="{structure}"}}'] == BOUND
    # Datagrams can be lost on a busy machine, so the count is a floor, not exact.
    accepted = metrics['collector_lines_accepted_total{listener="crypto"}']
    assert accepted >= 4 * PHASE * 0.9
    assert metrics['collector_alarms_state_evicted_total{structure="silence_match"}'] == (
        accepted - BOUND)
    # Allocator noise only: 60,000 more sources kept at even 200 bytes each would add
    # 12 MB.
    assert after_2n - after_n < max(8 * 1024, after_n // 10), (after_n, after_2n)
