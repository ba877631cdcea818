"""rsyslog as a benchmark peer: Debian's rsyslogd with a config, pid file and work dir of
its own, `imudp` on a loopback port into one `omfile`, started and stopped by the
benchmark. The system's rsyslog (if any) is never touched: nothing here reads or writes
/etc/rsyslog*, /var/log or the default pid file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

from tests.support.net import free_udp_port

OUTPUT = "out.log"
# The collector's default receive buffer (collector/config/model.py), for a fair race.
RCVBUF = "32m"


def config_text(port: int, workdir: Path, output: Path, rcvbuf: str = RCVBUF) -> str:
    """An rsyslog config: `imudp` on 127.0.0.1:`port` with a `rcvbuf` receive buffer,
    every message appended to `output` in rsyslog's default file format (timestamp, host,
    tag, message: one line per message)."""
    return (
        f'global(workDirectory="{workdir}")\n'
        'module(load="imudp")\n'
        f'input(type="imudp" address="127.0.0.1" port="{port}" rcvbufSize="{rcvbuf}")\n'
        f'action(type="omfile" file="{output}")\n')


def count_lines(path: Path) -> int:
    """Lines in `path` (0 when it does not exist yet)."""
    if not path.exists():
        return 0
    count = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def install_hint() -> str | None:
    """None when rsyslogd is on PATH (or in /usr/sbin); else how to get it."""
    if binary() is not None:
        return None
    return "rsyslogd is missing: apt-get install -y rsyslog (Debian's package)"


def binary() -> str | None:
    """The rsyslogd executable, if installed."""
    return shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")


def ensure_installed() -> str:
    """rsyslogd's path, installing Debian's package first when it is missing (as root)."""
    found = binary()
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                        "rsyslog"], check=True, capture_output=True, env=env)
        found = binary()
    if found is None:
        raise RuntimeError(install_hint() or "rsyslogd not found")
    return found


class Rsyslog:
    """One rsyslogd in the foreground (`-n`) with its own config and pid file (`-f`,
    `-i`) in a temporary directory, listening on a free loopback UDP port."""

    def __init__(self, directory: Path, executable: str) -> None:
        self.dir = directory
        self.port = free_udp_port()
        self.output = directory / OUTPUT
        work = directory / "work"
        work.mkdir()
        self.conf = directory / "rsyslog.conf"
        self.conf.write_text(config_text(self.port, work, self.output))
        self.pidfile = directory / "rsyslogd.pid"
        self.process = subprocess.Popen(
            [executable, "-n", "-f", str(self.conf), "-i", str(self.pidfile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_listening(self, timeout: float = 10.0) -> None:
        """Until rsyslogd has bound its port (it then writes its pid file)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                raise RuntimeError(f"rsyslogd exited: {err.decode(errors='replace')}")
            bound = any(c.laddr and c.laddr.port == self.port
                        for c in psutil.Process(self.process.pid).net_connections("udp"))
            if bound:
                return
            time.sleep(0.05)
        raise RuntimeError("rsyslogd did not bind its port in time")

    def psutil_process(self) -> psutil.Process:
        """rsyslogd (one process; its threads' CPU is counted in it)."""
        return psutil.Process(self.process.pid)

    def settle(self, expected: int, timeout: float = 30.0) -> int:
        """Wait until `expected` lines are in the output file or it stops growing for a
        second; the count then."""
        return settle(lambda: count_lines(self.output), expected, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in `timeout` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate(timeout=timeout)


@contextlib.contextmanager
def running_rsyslog(executable: str) -> Iterator[Rsyslog]:
    """A started, listening rsyslogd in a fresh temporary directory; stopped and removed
    on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-rsyslog-") as workdir:
        server = Rsyslog(Path(workdir), executable)
        try:
            server.wait_listening()
            yield server
        finally:
            server.stop()


def settle(count: Callable[[], int], expected: int, timeout: float = 30.0) -> int:
    """Wait until `count()` reaches `expected` or stops growing for a second (bounded by
    `timeout`); the count then."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = count()
        if now >= expected:
            return now
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > 1.0:
            return now
        time.sleep(0.1)
    return count()
