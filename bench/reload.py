"""Reload benchmark: lines lost on an unchanged listener while SIGHUP reloads run.

A collector with one socket listener (`bench`) gets a steady stream of numbered lines
from a sender thread (a short pause every 200 datagrams) for --seconds, while the config
file alternates between two versions (an extra listener and an [app:] section added, then
removed), a SIGHUP following each edit at even intervals and each reload waited for in
/metrics. Then the same run without reloads, as the baseline: on a busy machine the kernel
may drop datagrams whatever the collector does (its receive buffer full while the
collector waits for a core), and the baseline shows how many. Prints sent, read, accepted
and kernel drops for both runs; fails if a datagram read was not accepted or one sent is
neither read nor counted as a kernel drop.

    .venv/bin/python bench/reload.py                 # 20 reloads in 4 s, then baseline
    .venv/bin/python bench/reload.py --reloads 100 --seconds 10
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import bench_collector, env_note, settle, udp_port, wait_quietly
from tests.support.net import free_udp_port

RELOADS_OK = 'collector_config_reloads_total{result="ok"}'
READ = 'collector_datagrams_received_total{format="socket",listener="bench"}'
ACCEPTED = 'collector_lines_accepted_total{listener="bench"}'
DROPS = 'collector_udp_kernel_drops_total{listener="bench"}'


class Steady(threading.Thread):
    """Numbered lines to the listener for `seconds` (at most `limit` of them)."""

    def __init__(self, port: int, seconds: float, limit: int) -> None:
        super().__init__(name="steady", daemon=True)
        self.port = port
        self.seconds = seconds
        self.limit = limit
        self.sent = 0

    def run(self) -> None:
        """Send until the time is up."""
        deadline = time.monotonic() + self.seconds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while self.sent < self.limit and time.monotonic() < deadline:
                sock.sendto(b"steady/web.1:n %d" % self.sent, ("127.0.0.1", self.port))
                self.sent += 1
                if self.sent % 200 == 0:
                    time.sleep(0.002)


def run(reloads: int, seconds: float, limit: int) -> tuple[int, dict[str, float]]:
    """One run: lines sent and the metrics after they settled."""
    with bench_collector(listener="format = socket\napp = steady") as collector:
        collector.start()
        config = collector.config_path
        plain = config.read_text()
        extra = (plain + f"\n[listener:extra]\nudp = 127.0.0.1:{free_udp_port()}\n"
                 "format = socket\n\n[app:shop]\nalarm = a log:\nlog-alarm = a ^x\n")
        sender = Steady(udp_port(collector), seconds, limit)
        sender.start()
        started = time.monotonic()
        for done in range(1, reloads + 1):
            time.sleep(max(0.0, started + done * seconds / (reloads + 1) - time.monotonic()))
            config.write_text(extra if done % 2 else plain)
            assert collector.process is not None
            collector.process.send_signal(signal.SIGHUP)
            wait_quietly(lambda: collector.metrics().get(RELOADS_OK) == done, 20)  # noqa: B023
            if collector.metrics().get(RELOADS_OK) != done:
                raise RuntimeError(f"reload {done} not counted within 20 s")
        sender.join()
        metrics = settle(collector, sender.sent)
    return sender.sent, metrics


def main() -> int:
    """Run the benchmark and its baseline; exit 1 if a line read was not accepted or a
    datagram sent is missing from read plus kernel drops."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--lines", type=int, default=400_000, help="at most this many")
    args = parser.parse_args()
    print(env_note())
    ok = True
    for name, reloads in (("reloads", args.reloads), ("baseline", 0)):
        sent, metrics = run(reloads, args.seconds, args.lines)
        read, accepted = metrics.get(READ, 0), metrics.get(ACCEPTED, 0)
        drops = metrics.get(DROPS, 0)
        print(f"{name}: {reloads} reloads in {args.seconds:g} s; sent {sent}, read "
              f"{read:.0f}, accepted {accepted:.0f}, kernel drops {drops:.0f}")
        ok = ok and accepted == read and read + drops == sent
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
