"""The receivers benchmark's parts: the C sender's `--sockets N` against a real socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bench import csender

pytestmark = pytest.mark.e2e


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
