"""The receivers benchmark's parts: the C sender's `--sockets N` against a real socket."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench import csender

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sender(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C sender, compiled afresh into a temporary directory."""
    return csender.build(tmp_path_factory.mktemp("csender") / "csender")


@pytest.mark.parametrize("sockets", [1, 4])
def test_c_sender_spreads_its_batches_over_n_source_sockets(
        sender: Path, tmp_path: Path, sockets: int) -> None:
    """With --sockets N every datagram arrives, from exactly N source ports (so the
    kernel's SO_REUSEPORT hash can spread them over a listener's receivers)."""
    pool = tmp_path / "pool"
    pool.write_bytes(csender.pack(f"datagram {i}".encode() for i in range(400)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        receiver.settimeout(5)
        result = csender.send(sender, pool, receiver.getsockname()[1], 2000, 400,
                              max_seconds=10, sockets=sockets)
        got = [receiver.recvfrom(100) for _ in range(result.sent)]
    assert result.sent == 400
    assert sorted(data for data, _ in got) == sorted(csender.unpack(pool.read_bytes()))
    assert len({addr[1] for _, addr in got}) == sockets


def test_c_sender_refuses_a_socket_count_out_of_range(sender: Path, tmp_path: Path) -> None:
    """--sockets 0 is a usage error, not a sender that sends nothing."""
    pool = tmp_path / "pool"
    pool.write_bytes(csender.pack([b"x"]))
    with pytest.raises(RuntimeError, match="usage"):
        csender.send(sender, pool, 9, 100, 1, max_seconds=1, sockets=0)


def test_receivers_benchmark_runs_one_trial_per_k() -> None:
    """bench/receivers.py with one trial per search: a row for K=1 and K=2 (K=2 with a
    CPU figure per receiver), both searches' figures, the ratio and the projection or
    the note that nothing was held (nothing here asserts a rate was held)."""
    done = subprocess.run(
        [sys.executable, "bench/receivers.py", "--max-trials", "1", "--retries", "0",
         "--duration", "1", "--start", "500", "--max-lines", "1000", "--sockets", "4"],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^ 1\s+500\s+1\.0\s+500\s.*\s-\s", out, re.MULTILINE), out
    assert re.search(r"^ 2\s+500\s+1\.0\s+500\s.*\d\+\d", out, re.MULTILINE), out
    assert len(re.findall(r"max zero-loss rate: (500|0) after 1 trials", out)) == 2, out
    assert "ratio receivers=2/receivers=1, rate: " in out
    assert "projected on 16 cores" in out or "receivers = 2: no rate held" in out
