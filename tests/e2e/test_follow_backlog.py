"""A follower of a store of a million lines: bounded memory, no gap, no repeat.

The store is written directly with the writer's PartitionWriter (seconds instead of
minutes over UDP), then a real collector serves it. The follower asks for everything
(`follow=1&after=0`) over a raw socket and first reads slowly, while the collector's RSS
is sampled; then it reads the rest at full speed and checks every id once, in order,
with lines sent live during the backlog and after it arriving after the stored ones.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from collector.store.writer import PartitionWriter
from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.send import send

pytestmark = pytest.mark.e2e

STORED = 1_000_000
LIVE_DURING = 100
LIVE_AFTER = 100
# The collector's RSS may grow this much above its level when the follower connects. The
# old follower gathered the whole backlog first: about 1 GB for these lines.
RSS_GROWTH_BOUND = 64 * 1024 * 1024
SLOW_SECONDS = 6.0
CONFIG = """
[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
app = live
"""


def fill_store(data_dir: Path, count: int) -> tuple[int, int]:
    """`count` records of about 120 bytes in the collector's partitions, ids one
    microsecond apart and ending a minute ago; (first id, last id)."""
    directory = data_dir / "logs"
    directory.mkdir(parents=True)
    writer = PartitionWriter(directory, span_us=3600 * 10**6, retention_us=0, max_bytes=0)
    first = time.time_ns() // 1000 - 60 * 10**6 - count
    batch = 100_000
    for start in range(0, count, batch):
        writer.commit([
            (first + i, None, "shop", f"web.{i % 4}", "host-1", "socket", "log",
             f"GET /items/{i} HTTP/1.1 200 {i % 977} bytes in {i % 89} msecs "
             f"(stored line number {i:07d})", None, None, None, None, None, None, None)
            for i in range(start, min(start + batch, count))])
    return first, first + count - 1


class RssSampler:
    """Samples a process's RSS every 50 ms in a thread; remembers the peak."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.baseline: int = self._process.memory_info().rss
        self.peak: int = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return

    def over(self) -> bool:
        """Whether the peak so far exceeds the bound."""
        growth: int = self.peak - self.baseline
        return growth > RSS_GROWTH_BOUND

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class NdjsonReader:
    """An HTTP/1.0 GET (so the body is the raw NDJSON, closed by the server) read over a
    socket with a small receive buffer, yielding record ids."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Small before connecting, so that the kernel cannot absorb the backlog for us.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        self._buffer = b""
        self._headers_done = False

    def read(self, size: int) -> Iterator[bytes]:
        """One recv of up to `size` bytes; the complete body lines it finishes."""
        data = self.sock.recv(size)
        if not data:
            raise AssertionError("the collector closed the stream")
        self._buffer += data
        if not self._headers_done:
            head, sep, rest = self._buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            assert head.startswith(b"HTTP/1.0 200"), head
            self._headers_done = True
            self._buffer = rest
        *lines, self._buffer = self._buffer.split(b"\n")
        yield from lines

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def record_id(line: bytes) -> int | None:
    """The id of a record line (`{"id": N, ...`); None for the cursor and heartbeats."""
    if not line.startswith(b'{"id": '):
        return None
    return int(line[7:line.index(b",")])


@pytest.fixture
def big_collector(new_collector: Callable[..., CollectorProcess]
                  ) -> tuple[CollectorProcess, int, int]:
    """A running collector over a store of STORED lines; (collector, first id, last id)."""
    collector = new_collector(config=CONFIG)
    first, last = fill_store(collector.data_dir, STORED)
    collector.start(timeout=60)
    return collector, first, last


def test_follow_after_zero_streams_a_million_lines_in_bounded_memory(
        big_collector: tuple[CollectorProcess, int, int]) -> None:
    """follow=1&after=0 over a million stored lines, read slowly and then fast: the
    collector's RSS stays within RSS_GROWTH_BOUND of where it was, every stored line comes
    once and in order, and lines sent during and after the backlog follow it, once each."""
    collector, first, last = big_collector
    assert collector.process is not None
    port = collector.port("plain")
    ids: list[int] = []
    reader = NdjsonReader(collector.http_port, "/v1/logs?follow=1&after=0")
    try:
        with RssSampler(collector.process.pid) as rss:
            # Slow: 4 KiB every 10 ms, about 400 KB/s; live lines arrive meanwhile.
            send([f"during {i}".encode() for i in range(LIVE_DURING)], port)
            deadline = time.monotonic() + SLOW_SECONDS
            while time.monotonic() < deadline and not rss.over():
                ids.extend(i for line in reader.read(4096) if (i := record_id(line)))
                time.sleep(0.01)
            assert not rss.over(), f"RSS grew {(rss.peak - rss.baseline) >> 20} MiB"
            assert ids, "nothing arrived while reading slowly"
            # Fast: the rest of the backlog, then the live lines.
            want = STORED + LIVE_DURING + LIVE_AFTER
            sent_after = False
            slow_count, started = len(ids), time.monotonic()
            deadline = started + 120
            while len(ids) < want and time.monotonic() < deadline and not rss.over():
                ids.extend(i for line in reader.read(1 << 20) if (i := record_id(line)))
                if not sent_after and len(ids) >= STORED + LIVE_DURING:
                    send([f"after {i}".encode() for i in range(LIVE_AFTER)], port)
                    sent_after = True
            growth = rss.peak - rss.baseline
        assert growth <= RSS_GROWTH_BOUND, f"RSS grew {growth >> 20} MiB"
    finally:
        reader.close()
    rate = (len(ids) - slow_count) / (time.monotonic() - started)
    print(f"collector RSS: {rss.baseline >> 20} MiB at start, peak {rss.peak >> 20} MiB "
          f"(+{growth >> 20} MiB); {slow_count} lines read slowly, then {rate:,.0f} lines/s")
    assert len(ids) == STORED + LIVE_DURING + LIVE_AFTER
    assert ids[:STORED] == list(range(first, last + 1))
    assert all(b > a for a, b in itertools.pairwise(ids))
    live = collector.get(f"/v1/logs?app=live&limit={LIVE_DURING + LIVE_AFTER}")["records"]
    assert [r["id"] for r in live] == ids[STORED:]
    assert [r["line"] for r in live] == ([f"during {i}" for i in range(LIVE_DURING)]
                                         + [f"after {i}" for i in range(LIVE_AFTER)])


def test_follow_from_the_middle_resumes_there(
        big_collector: tuple[CollectorProcess, int, int]) -> None:
    """after=ID continues with the record after ID (the resume of `tail -f`), and the
    stream's first line is the cursor at ID."""
    collector, first, _ = big_collector
    middle = first + STORED // 2
    reader = NdjsonReader(collector.http_port, f"/v1/logs?follow=1&after={middle}")
    lines: list[bytes] = []
    try:
        deadline = time.monotonic() + 20
        while len(lines) < 3 and time.monotonic() < deadline:
            lines.extend(line for line in reader.read(4096) if line)
    finally:
        reader.close()
    assert lines[0] == b'{"cursor": %d}' % middle
    assert [record_id(line) for line in lines[1:3]] == [middle + 1, middle + 2]
    wait_for(lambda: collector.get("/healthz")["status"] == "ok", 5, "the collector")


def test_a_follower_that_stops_reading_live_catches_up_from_the_store(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A follower that stops reading while 30,000 lines arrive falls behind the live
    stream (counted in /metrics) without the collector holding them for it: once it reads
    again it gets every accepted line, once and in order, from the store."""
    collector = new_collector(config=CONFIG)
    collector.start()
    assert collector.process is not None
    reader = NdjsonReader(collector.http_port, "/v1/logs?follow=1&limit=0")
    ids: list[int] = []
    try:
        lines: list[bytes] = []
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            lines.extend(line for line in reader.read(4096) if line)
        assert lines[0].startswith(b'{"cursor": ')
        with RssSampler(collector.process.pid) as rss:
            send([f"shop/web.1:live {i:05d} {'x' * 200}".encode() for i in range(30_000)],
                 collector.port("plain"))
            metrics = collector.wait_metrics(
                lambda m: m.get("collector_followers_lagged_total", 0) >= 1, 20,
                "the follower marked lagged")
            accepted = int(metrics['collector_lines_accepted_total{listener="plain"}'])
            deadline = time.monotonic() + 60
            while len(ids) < accepted and time.monotonic() < deadline:
                ids.extend(i for line in reader.read(1 << 20) if (i := record_id(line)))
                accepted = int(collector.metrics()[
                    'collector_lines_accepted_total{listener="plain"}'])
        growth = rss.peak - rss.baseline
        assert growth <= RSS_GROWTH_BOUND, f"RSS grew {growth >> 20} MiB"
    finally:
        reader.close()
    assert accepted > 10_000
    assert len(ids) == accepted
    assert all(b > a for a, b in itertools.pairwise(ids))


def test_follow_hands_over_records_not_yet_committed(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """With the store's writer stopped (SIGSTOP), lines are accepted but not committed: a
    follower from after=0 gets the committed ones from the store, then those on their way
    to disk, then live ones; once the writer runs again nothing comes twice."""
    collector = new_collector(config=CONFIG)
    collector.start()
    assert collector.process is not None
    port = collector.port("plain")

    def accepted() -> int:
        return int(collector.metrics()['collector_lines_accepted_total{listener="plain"}'])

    def read_until(count: int, ids: list[int], reader: NdjsonReader) -> None:
        deadline = time.monotonic() + 30
        while len(ids) < count and time.monotonic() < deadline:
            ids.extend(i for line in reader.read(1 << 16) if (i := record_id(line)))

    send([f"shop/web.1:stored {i}".encode() for i in range(2500)], port)
    time.sleep(0.5)
    wait_for(lambda: collector.metrics()["collector_store_lines_committed_total"]
             == accepted() > 0, 20, "the lines committed")
    (writer,) = psutil.Process(collector.process.pid).children()
    writer.suspend()
    reader: NdjsonReader | None = None
    ids: list[int] = []
    try:
        send([f"shop/web.1:pending {i}".encode() for i in range(1500)], port)
        time.sleep(0.5)
        waiting = collector.metrics()["collector_store_queue_depth"]
        assert waiting > 0
        reader = NdjsonReader(collector.http_port, "/v1/logs?follow=1&after=0")
        read_until(accepted(), ids, reader)
        assert len(ids) == accepted()
        send([f"shop/web.1:live {i}".encode() for i in range(500)], port)
        time.sleep(0.5)
        read_until(accepted(), ids, reader)
    finally:
        writer.resume()
    assert reader is not None
    try:
        collector.wait_metrics(lambda m: m["collector_store_queue_depth"] == 0, 20,
                               "the writer caught up")
        send([b"shop/web.1:last"], port)
        time.sleep(0.2)
        read_until(accepted(), ids, reader)
    finally:
        reader.close()
    stored = [r["id"] for r in collector.get("/v1/logs?after=0&limit=10000")["records"]]
    assert ids == stored
    assert len(ids) == accepted()
