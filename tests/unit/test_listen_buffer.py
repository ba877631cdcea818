"""The receive buffer: which option asks for it and when the collector must warn."""

from __future__ import annotations

import socket

from collector.listen.udp import force_option, grow_receive_buffer, receive_buffer_advice


def test_force_option_is_known_on_linux_without_the_name() -> None:
    """Python's socket module lacks SO_RCVBUFFORCE; on Linux its number (33) is used, and
    elsewhere there is none to try."""
    assert force_option("linux") == getattr(socket, "SO_RCVBUFFORCE", 33) == 33
    if not hasattr(socket, "SO_RCVBUFFORCE"):
        assert force_option("darwin") is None


def test_advice_names_the_sysctl_only_when_the_buffer_is_short() -> None:
    """A buffer granted below the configured size gets the sysctl that fixes it; one at
    or above it (the kernel reports twice what it was asked) gets nothing."""
    assert receive_buffer_advice(32 << 20, 8 << 20) == "sysctl -w net.core.rmem_max=33554432"
    assert receive_buffer_advice(32 << 20, 64 << 20) is None
    assert receive_buffer_advice(32 << 20, 32 << 20) is None


def test_grow_reports_what_the_kernel_granted() -> None:
    """The size returned is what getsockopt says, at least the kernel's minimum."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        obtained = grow_receive_buffer(sock, 1 << 20)
        assert obtained == sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        assert obtained >= 2048
