"""The peers benchmark's parts against real processes: the C sender compiled and feeding a
real collector and a real rsyslogd, and bench/peers.py wired end to end with one trial per
search (not its speed: nothing here asserts a rate was held)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import csender, rsyslog
from bench.harness import SECRET, bench_collector, settle, udp_port
from bench.peers import LISTENER
from shipper.loadgen import make_lines

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
needs_rsyslog = pytest.mark.skipif(rsyslog.binary() is None,
                                   reason="rsyslogd not installed (apt-get install rsyslog)")


@pytest.fixture(scope="module")
def sender(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C sender, compiled afresh into a temporary directory."""
    binary = tmp_path_factory.mktemp("csender") / "csender"
    assert csender.needs_build(csender.SOURCE, binary)
    return csender.build(binary)


def test_c_sender_delivers_100_logcrypto_lines_that_a_collector_stores(
        sender: Path, tmp_path: Path) -> None:
    """100 unique lines, encrypted beforehand and replayed by the C sender, are all
    committed by a real collector; every 10th send time is reported for the probes."""
    pool = tmp_path / "pool"
    pool.write_bytes(csender.pack(csender.crypto_datagrams(
        make_lines(100), SECRET, first_micros=time.time_ns() // 1000, probe_every=10)))
    with bench_collector(LISTENER) as collector:
        collector.start(timeout=30)
        result = csender.send(sender, pool, udp_port(collector), 1000, 100,
                              max_seconds=10, probe_every=10)
        metrics = settle(collector, result.sent)
    assert result.sent == 100
    assert sorted(result.probes) == list(range(0, 100, 10))
    assert metrics["collector_store_lines_committed_total"] == 100


def test_c_sender_stops_at_its_time_bound(sender: Path, tmp_path: Path) -> None:
    """Asked for more lines than the rate can send in MAX_SECONDS, it stops there."""
    pool = tmp_path / "pool"
    pool.write_bytes(csender.pack([b"x"] * 1000))
    result = csender.send(sender, pool, 9, 100, 1000, max_seconds=0.5)
    assert 20 <= result.sent <= 100
    assert result.seconds < 2


def test_c_sender_refuses_a_count_beyond_the_pool(sender: Path, tmp_path: Path) -> None:
    """It never sends past the pool's end: more lines than it holds is an error."""
    pool = tmp_path / "pool"
    pool.write_bytes(csender.pack([b"x"] * 3))
    with pytest.raises(RuntimeError, match="holds 3 records, 4 asked"):
        csender.send(sender, pool, 9, 100, 4, max_seconds=1)


@needs_rsyslog
def test_rsyslog_stores_every_line_the_c_sender_sends(sender: Path, tmp_path: Path) -> None:
    """A benchmark rsyslogd (own config and pid file) writes one line per datagram to its
    file, and is gone once stopped."""
    pool = tmp_path / "pool"
    pool.write_bytes(csender.pack(csender.syslog_plain(line) for line in make_lines(100)))
    executable = rsyslog.binary()
    assert executable is not None
    with rsyslog.running_rsyslog(executable) as server:
        result = csender.send(sender, pool, server.port, 1000, 100, max_seconds=10)
        stored = server.settle(100)
        text = server.output.read_text()
        process = server.process
    assert (result.sent, stored) == (100, 100)
    assert re.search(r"seq=99\b", text.splitlines()[-1]), text
    assert process.poll() is not None


@needs_rsyslog
def test_peers_runs_one_trial_per_receiver_then_tail_and_query() -> None:
    """bench/peers.py with one trial per search: both rows, both figures, the ratios,
    then the follower and the query over the lines it filled."""
    done = subprocess.run(
        [sys.executable, "bench/peers.py", "--max-trials", "1", "--retries", "0",
         "--duration", "1", "--start", "500", "--max-lines", "1000", "--fill-lines", "600"],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^collector\s+500\s+1\.0\s+500\s", out, re.MULTILINE), out
    assert re.search(r"^\s+rsyslog\s+500\s+1\.0\s+500\s", out, re.MULTILINE), out
    assert len(re.findall(r"max zero-loss rate[^:]*: (500|0) after 1 trials", out)) == 2
    assert "ratio collector/rsyslog, rate: " in out
    if "max zero-loss rate: 500" in out.split("collector (", 1)[1]:
        assert re.search(r"follower saw \d+/\d+ probes", out), out
        assert re.search(r"query GET /v1/logs\?app=bench&regex=.* over \d+ stored lines", out)
