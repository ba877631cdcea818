"""kill -9 and restart mid-stream; garbage and valid floods from one sender."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from logwire.logcrypto import encrypt, frame
from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.process import Follower
from tests.support.send import crypto_lines, send
from tests.support.store import stored_rows

pytestmark = pytest.mark.e2e

SECRET = "restart-test-secret"
CONFIG = """
[listener:crypto]
udp = 127.0.0.1:{port:crypto}
format = crypto
secret = $(LOG_SECRET)
max-datagram = 4096
"""


def stored_lines(data_dir: Path) -> list[tuple[int, str]]:
    """(id, line) of every committed record, read straight from the partition files."""
    return [(row[0], row[7]) for row in stored_rows(data_dir / "logs", check=True)]


class Sender(threading.Thread):
    """Sends numbered lines at about `rate` per second until stopped (bounded anyway)."""

    def __init__(self, port: int, rate: float = 2000, limit: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.rate = rate
        self.limit = limit
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        """Send in 10 ms slices."""
        started = time.monotonic()
        while not self.halt.is_set() and time.monotonic() - started < self.limit:
            chunk = int(self.rate / 100)
            lines = [f"seq={self.sent + i}" for i in range(chunk)]
            send(crypto_lines(lines, SECRET, prefix="shop/web.1"), self.port, pause_every=0)
            self.sent += chunk
            time.sleep(0.01)


def test_kill_9_mid_stream_loses_no_committed_line_and_tail_resumes(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """kill -9 while lines stream in: after restart the store opens, every committed line
    is there, ids keep increasing, and a running `tail -f` resumes with no duplicate."""
    collector = new_collector(config=CONFIG, env={"LOG_SECRET": SECRET})
    collector.start()
    follower = Follower(collector.popen_cli("tail", "-f", "--json", "-n", "0"))
    follower.start()
    sender = Sender(collector.port("crypto"))
    sender.start()
    try:
        wait_for(lambda: len(follower.records) > 500, 20, "the stream to flow")
        committed_before = stored_lines(collector.data_dir)
        assert committed_before
        collector.kill9()
        time.sleep(0.3)
        collector.start()
        restarted_at = sender.sent
        wait_for(lambda: sender.sent > restarted_at + 1000, 20, "lines after the restart")
    finally:
        sender.halt.set()
        sender.join(10)
    last_seq = f"seq={sender.sent - 1}"
    wait_for(lambda: any(r["line"] == last_seq for r in follower.records), 20,
             "the last line in tail")
    errors = follower.stop()

    after = stored_lines(collector.data_dir)
    stored = set(after)
    missing = [line for line in committed_before if line not in stored]
    assert missing == [], f"{len(missing)} committed lines lost"
    ids = [record_id for record_id, _ in after]
    assert ids == sorted(set(ids))
    # The tail printed each line once, in id order, across the restart, and went on
    # with lines sent after it.
    tail_ids = [r["id"] for r in follower.records]
    assert tail_ids == sorted(set(tail_ids))
    seqs = [r["line"] for r in follower.records]
    assert len(seqs) == len(set(seqs))
    after_restart = {line for _, line in after if int(line[4:]) >= restarted_at}
    assert after_restart <= set(seqs)
    assert "connection lost" in errors


def test_garbage_flood_from_one_sender_leaves_others_served(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Random bytes, truncated and oversize datagrams and invalid UTF-8 from one sender
    are counted by reason; a well-behaved sender alongside loses nothing."""
    collector = new_collector(config=CONFIG, env={"LOG_SECRET": SECRET})
    collector.start()
    port = collector.port("crypto")
    rng = random.Random(7)
    good = crypto_lines([f"good {i}" for i in range(400)], SECRET, prefix="shop/web.1")
    garbage = [os.urandom(rng.choice((7, 16, 32, 100, 160, 1500))) for _ in range(20_000)]
    garbage += [g[:16] for g in good[:50]]
    garbage += [b"\0" * 5000] * 50
    flood = threading.Thread(target=send, args=(garbage, port, "127.0.0.2", 500))
    flood.start()
    send(good, port, source="127.0.0.3", pause_every=20)
    flood.join(60)
    latin1 = encrypt(frame(b"caf\xe9 au lait\n", time.time_ns() // 1000, b"shop/web.9"),
                     SECRET, "aes-256-cbc")
    send([latin1], port, source="127.0.0.3")

    metrics = collector.wait_metrics(
        lambda m: m['collector_datagrams_received_total{format="crypto",listener="crypto"}']
        == len(garbage) + len(good) + 1, 30, "every datagram counted")
    dropped = {key.split('reason="')[1].rstrip('"}'): value for key, value in metrics.items()
               if key.startswith('collector_datagrams_dropped_total{listener="crypto"')}
    assert sum(dropped.values()) == len(garbage)
    assert dropped["oversize"] == 50
    assert dropped["bad_length"] > 1000
    assert dropped["bad_padding"] > 100
    stored = collector.get("/v1/logs?app=shop&limit=1000")["records"]
    assert sorted(r["line"] for r in stored if r["source"] == "web.1") == sorted(
        f"good {i}" for i in range(400))
    assert metrics['collector_udp_kernel_drops_total{listener="crypto"}'] == 0
    # Not UTF-8: kept, escaped, counted; never dropped.
    assert metrics['collector_lines_escaped_total{listener="crypto"}'] == 1
    (escaped,) = [r for r in stored if r["source"] == "web.9"]
    assert escaped["line"] == "caf\\xe9 au lait"


def test_valid_flood_is_rate_limited_per_sender(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """With sender-rate set, a sender over its rate is cut to it (counted as
    rate_limited) while another sender's lines all arrive."""
    collector = new_collector(config=CONFIG + "sender-rate = 500\n",
                              env={"LOG_SECRET": SECRET})
    collector.start()
    port = collector.port("crypto")
    flood = crypto_lines([f"flood {i}" for i in range(5000)], SECRET, prefix="noisy/web.1")
    quiet = crypto_lines([f"quiet {i}" for i in range(100)], SECRET, prefix="calm/web.1")
    flooder = threading.Thread(target=send, args=(flood, port, "127.0.0.2", 500))
    flooder.start()
    send(quiet, port, source="127.0.0.3", pause_every=0)
    flooder.join(60)
    metrics = collector.wait_metrics(lambda m: m.get(
        'collector_datagrams_dropped_total{listener="crypto",reason="rate_limited"}', 0)
        > 3000, 20, "rate limiting")
    assert metrics['collector_datagrams_accepted_total{listener="crypto"}'] < 2000
    calm = wait_for(lambda: len(r := collector.get("/v1/logs?app=calm&limit=500")["records"])
                    == 100 and r, 10, "every quiet line")
    assert {r["line"] for r in calm} == {f"quiet {i}" for i in range(100)}
