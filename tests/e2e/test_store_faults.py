"""The store of a real collector under faults: a full disk, a writer killed mid-stream.

The full disk is a real one: the data dir is a tmpfs of 4 MiB, filled by a filler file
until writes fail, then freed. Lines are numbered so that every stored line can be
checked against what the collector said it accepted and committed.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.send import crypto_lines, send
from tests.support.store import stored_rows

pytestmark = pytest.mark.e2e

SECRET = "store-faults-secret"
CONFIG = """
[listener:crypto]
udp = 127.0.0.1:{port:crypto}
format = crypto
secret = $(LOG_SECRET)
max-datagram = 4096
"""
PAD = "x" * 900


def stored(data_dir: Path) -> list[str]:
    """The line of every committed record, duplicates included, from the files."""
    return [row[7] for row in stored_rows(data_dir / "logs")]


def seqs(lines: list[str]) -> list[int]:
    """The sequence numbers of numbered lines."""
    return [int(line.split()[0][4:]) for line in lines if line.startswith("seq=")]


class Lines:
    """Numbered lines sent to a collector, in bounded bursts."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.collector = collector
        self.sent = 0

    def burst(self, count: int) -> None:
        """Send `count` more lines (about 1 KB each)."""
        lines = [f"seq={self.sent + i} {PAD}" for i in range(count)]
        send(crypto_lines(lines, SECRET, prefix="shop/web.1"), self.collector.port("crypto"))
        self.sent += count


def metric(values: dict[str, float], name: str) -> float:
    """One unlabelled sample (0 when absent)."""
    return values.get(name, 0.0)


def accepted(values: dict[str, float]) -> float:
    """Lines the crypto listener accepted."""
    return metric(values, 'collector_lines_accepted_total{listener="crypto"}')


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full (down to the last 512 bytes); returns it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 512):
            block = b"\0" * size
            while _fits(fd, block):
                pass
    finally:
        os.close(fd)
    return filler


def _fits(fd: int, block: bytes) -> bool:
    """Append `block`; False once the filesystem is full."""
    try:
        os.write(fd, block)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return False
    return True


@pytest.fixture
def small_disk_collector(new_collector: Callable[..., CollectorProcess]
                         ) -> Iterator[CollectorProcess]:
    """A collector whose data dir is a 4 MiB tmpfs (unmounted at teardown)."""
    collector = new_collector(config=CONFIG, env={"LOG_SECRET": SECRET})
    collector.data_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs",
                              str(collector.data_dir)], capture_output=True, text=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield collector
    finally:
        collector.close()
        subprocess.run(["umount", "-l", str(collector.data_dir)], check=False)


def send_until_writes_fail(collector: CollectorProcess, lines: Lines) -> dict[str, float]:
    """Send bursts until the log reports a failed write (bounded); the metrics then."""
    before = collector.output().count("store_write_failed")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines.burst(50)
        if collector.output().count("store_write_failed") > before:
            return collector.metrics()
        time.sleep(0.05)
    raise AssertionError("writes never failed on the full disk")


def hold_lines(collector: CollectorProcess, lines: Lines) -> dict[str, float]:
    """Send bursts until /metrics says writes fail and lines wait (bounded); those
    metrics. (Right after a failure a retry can still fit in space a rollback freed.)"""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lines.burst(20)
        values = collector.metrics()
        if (metric(values, "collector_store_writes_failing") == 1
                and metric(values, "collector_store_queue_depth") > 0):
            return values
        time.sleep(0.1)
    raise AssertionError("lines never waited on failing writes")


def test_full_disk_holds_lines_then_resumes_and_sigterm_exits_in_seconds(
        small_disk_collector: CollectorProcess) -> None:
    """Fill the data dir's filesystem until commits fail: lines wait (nothing dropped or
    lost), the log and /metrics say so; free it: ingest resumes, every accepted line is
    stored exactly once. Fill it again and SIGTERM: the collector exits within seconds
    and logs how many lines it could not commit; no committed line is lost or doubled."""
    collector = small_disk_collector
    collector.start()
    lines = Lines(collector)
    lines.burst(200)
    collector.wait_metrics(lambda m: accepted(m) == metric(
        m, "collector_store_lines_committed_total") > 0, 10, "the first lines committed")

    filler = fill(collector.data_dir)
    send_until_writes_fail(collector, lines)
    failing = hold_lines(collector, lines)
    assert metric(failing, "collector_store_lines_dropped_total") == 0
    filler.unlink()
    recovered = collector.wait_metrics(
        lambda m: metric(m, "collector_store_writes_failing") == 0
        and metric(m, "collector_store_queue_depth") == 0, 30, "ingest to resume")
    assert "store_write_recovered" in collector.output()
    assert metric(failing, "collector_store_writes_failing") == 1
    assert metric(failing, "collector_store_write_failures_total") >= 1
    assert metric(failing, "collector_store_last_write_failure_timestamp_seconds") > 0
    lines.burst(100)
    recovered = collector.wait_metrics(
        lambda m: accepted(m) == metric(m, "collector_store_lines_committed_total")
        and metric(m, "collector_store_queue_depth") == 0, 20, "the new lines committed")
    numbers = seqs(stored(collector.data_dir))
    assert len(numbers) == len(set(numbers)), "a line was stored twice"
    assert len(numbers) == accepted(recovered)
    assert metric(recovered, "collector_store_lines_dropped_total") == 0

    # Full again, and SIGTERM while writes fail.
    committed_before = set(numbers)
    fill(collector.data_dir)
    send_until_writes_fail(collector, lines)
    held = hold_lines(collector, lines)
    started = time.monotonic()
    assert collector.stop(timeout=30) == 0
    assert time.monotonic() - started < 20
    output = collector.output()
    lost = re.findall(r"store_lines_lost\s.*?lines=(\d+)", output)
    assert lost, output[-3000:]
    assert int(lost[0]) >= metric(held, "collector_store_queue_depth") > 0
    (collector.data_dir / "filler").unlink()
    after = seqs(stored(collector.data_dir))
    assert len(after) == len(set(after)), "a line was stored twice"
    assert committed_before <= set(after), "a committed line was lost"


def writer_pids(collector: CollectorProcess) -> list[int]:
    """The collector's store writer processes (its children running the writer)."""
    assert collector.process is not None
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)
        if (ppid and int(ppid.group(1)) == collector.process.pid
                and b"collector.store.writer" in cmdline):
            found.append(int(entry.name))
    return found


def test_writer_killed_again_and_again_mid_stream_loses_and_doubles_nothing(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """kill -9 the store writer repeatedly while lines stream in (some kills land between
    a commit and its acknowledgement): the collector restarts it each time, counts the
    restarts, and every accepted line ends up stored exactly once."""
    collector = new_collector(config=CONFIG, env={"LOG_SECRET": SECRET})
    collector.start()
    lines = Lines(collector)
    kills = 4
    for kill in range(1, kills + 1):
        lines.burst(300)
        (pid,) = wait_for(lambda: writer_pids(collector) or None, 20, "a running writer")
        os.kill(pid, signal.SIGKILL)
        lines.burst(100)

        def caught_up(m: dict[str, float], restarts: int = kill) -> bool:
            """A new writer runs and has committed everything."""
            return (metric(m, "collector_store_writer_restarts_total") >= restarts
                    and accepted(m) == metric(m, "collector_store_lines_committed_total")
                    and metric(m, "collector_store_queue_depth") == 0)

        final = collector.wait_metrics(caught_up, 30, "the writer restarted")
    assert accepted(final) > 0
    assert metric(final, "collector_store_writer_restarts_total") == kills
    assert collector.output().count("store_writer_restarted") == kills
    assert collector.stop() == 0
    numbers = seqs(stored(collector.data_dir))
    assert len(numbers) == len(set(numbers)), "a line was stored twice"
    assert len(numbers) == accepted(final)
