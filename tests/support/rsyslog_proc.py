"""A real rsyslogd (Debian's) with a config, pid file and work dir of its own in a
temporary directory, never the system's: `rsyslogd -n -f CONF -i PIDFILE`."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.support.net import wait_for


def rsyslogd() -> str:
    """rsyslogd's path (scripts/bootstrap-system.sh installs rsyslog, rsyslog-openssl)."""
    found = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
    if found is None:
        raise AssertionError("rsyslogd is missing: run scripts/bootstrap-system.sh")
    return found


@dataclass
class RsyslogProcess:
    """rsyslogd in the foreground with `config` (a `global(workDirectory=...)` line is
    put first); `listens` are (kind, port) it must have bound before `start` returns."""

    workdir: Path
    config: str
    listens: tuple[tuple[str, int], ...] = ()
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> None:
        """Write the config, start rsyslogd and wait for its ports."""
        work = self.workdir / "work"
        work.mkdir(exist_ok=True)
        conf = self.workdir / "rsyslog.conf"
        conf.write_text(f'global(workDirectory="{work}")\n{self.config}\n')
        check = subprocess.run([rsyslogd(), "-N1", "-f", str(conf)], check=False,
                               capture_output=True,
                               text=True, timeout=30)
        if check.returncode != 0:
            raise AssertionError(f"rsyslog config refused:\n{check.stderr}")
        with (self.workdir / "rsyslogd.log").open("wb") as out:
            self.process = subprocess.Popen(
                [rsyslogd(), "-n", "-f", str(conf), "-i", str(self.workdir / "rsyslogd.pid")],
                stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._bound, timeout, "rsyslogd to bind its ports")

    def _bound(self) -> bool:
        process = self.process
        assert process is not None
        if process.poll() is not None:
            raise AssertionError(f"rsyslogd exited with {process.returncode}: {self.output()}")
        have = {(c.type, c.laddr.port) for c in psutil.Process(process.pid).net_connections()
                if c.laddr}
        kinds = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}
        return all((kinds[kind], port) in have for kind, port in self.listens)

    def output(self) -> str:
        """What rsyslogd printed."""
        path = self.workdir / "rsyslogd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
