"""The `shipper` command and its sidecar as real subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.support.net import free_udp_port

VENV_BIN = Path(sys.executable).parent


def shipper_env(**extra: str) -> dict[str, str]:
    """The environment with the venv's `shipper` and `uwsgi` first on PATH."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1", **extra}


def shipper(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0
            ) -> subprocess.CompletedProcess[str]:
    """Run `shipper ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "shipper", *args], env=env or shipper_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def gone(process: psutil.Process) -> bool:
    """Whether a process has exited (a zombie not yet reaped counts as exited)."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class SidecarProcess:
    """`shipper run` on a free loopback port, sending to `collector_port`."""

    workdir: Path
    collector_port: int
    key: str
    args: list[str] = field(default_factory=list)
    listen_port: int = field(default_factory=free_udp_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until it answers `shipper ready`."""
        log = (self.workdir / f"sidecar-{self.listen_port}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shipper", "run", "--listen", f"127.0.0.1:{self.listen_port}",
             "--collector", f"127.0.0.1:{self.collector_port}", *self.args],
            env=shipper_env(LOG_KEY=self.key), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        done = shipper("ready", "--listen", f"127.0.0.1:{self.listen_port}", "--timeout", "15")
        assert done.returncode == 0
        assert "did not answer" not in done.stderr, self.output()

    def send(self, messages: list[bytes]) -> None:
        """Send messages as uWSGI's socket logger does, one datagram each."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for message in messages:
                sock.sendto(message, ("127.0.0.1", self.listen_port))

    def output(self) -> str:
        """What the sidecar logged."""
        return (self.workdir / f"sidecar-{self.listen_port}.log").read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal and wait; the exit code."""
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def close(self) -> None:
        """Kill it if still running (teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
