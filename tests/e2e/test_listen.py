"""The UDP listeners of a real collector process: the receive buffer it gets and reports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.collector_proc import CollectorProcess

pytestmark = pytest.mark.e2e

RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
CONFIG = """
[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
rcvbuf = {rcvbuf}
"""


def rmem_max() -> int:
    """The kernel's cap on SO_RCVBUF for an unprivileged socket."""
    return int(RMEM_MAX.read_text())


def has_net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (bit 12), which SO_RCVBUFFORCE needs."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 12 & 1)
    return False


needs_linux_root = pytest.mark.skipif(
    not RMEM_MAX.exists() or os.geteuid() != 0 or not has_net_admin(),
    reason="needs Linux and root with CAP_NET_ADMIN")


def buffer_metric(collector: CollectorProcess) -> float:
    """collector_udp_receive_buffer_bytes of the `plain` listener (0 when absent)."""
    metrics = collector.metrics()
    return metrics.get('collector_udp_receive_buffer_bytes{listener="plain"}', 0.0)


@needs_linux_root
def test_root_gets_the_configured_buffer_past_rmem_max(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """As root the collector gets at least the configured buffer even when that is more
    than net.core.rmem_max allows an unprivileged socket, reports it in /metrics, and
    does not warn."""
    wanted = 4 * rmem_max()
    collector = new_collector(config=CONFIG.replace("{rcvbuf}", str(wanted)))
    collector.start()
    assert buffer_metric(collector) >= wanted
    assert collector.metrics()[
        'collector_udp_receive_buffer_configured_bytes{listener="plain"}'] == wanted
    assert "receive_buffer_small" not in collector.output()


@needs_linux_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_without_net_admin_the_short_buffer_is_reported_and_warned(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Without CAP_NET_ADMIN the kernel caps the buffer at rmem_max: the collector still
    starts, /metrics shows the buffer it really got, and a start-up warning gives the
    sysctl to run."""
    cap = rmem_max()
    wanted = 4 * cap
    collector = new_collector(config=CONFIG.replace("{rcvbuf}", str(wanted)),
                              prefix=["setpriv", "--bounding-set", "-net_admin"])
    collector.start()
    assert buffer_metric(collector) == 2 * cap
    output = collector.output()
    assert "receive_buffer_small" in output
    assert f"sysctl -w net.core.rmem_max={wanted}" in output
