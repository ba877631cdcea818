"""A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) with a config and
storage of its own in a temporary directory, on a loopback port, gossip off."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.net import tcp_open, wait_for
from tests.support.process import terminate

BINARY = "/usr/bin/prometheus-alertmanager"
# One receiver that sends nowhere: the tests read what Alertmanager holds over its API.
CONFIG = "route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n"


def alertmanager() -> str:
    """The binary's path (scripts/bootstrap-system.sh installs prometheus-alertmanager)."""
    found = shutil.which(BINARY) or shutil.which("prometheus-alertmanager")
    if found is None:
        raise AssertionError("prometheus-alertmanager is missing: run "
                             "scripts/bootstrap-system.sh")
    return found


@dataclass
class AlertmanagerProcess:
    """`prometheus-alertmanager` on 127.0.0.1:`port` with its files under `workdir`."""

    workdir: Path
    port: int = 0  # 0: a free one, picked at creation
    process: subprocess.Popen[bytes] | None = None
    # Until it starts, the port is bound (not listening) by this socket: a connection to
    # it is refused, as to an Alertmanager that is down, and no other process of the test
    # (a collector's or uWSGI's listener, an outgoing connection's local port) can take
    # it in the meantime and answer in its place.
    holder: socket.socket | None = None

    def __post_init__(self) -> None:
        self.holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.holder.bind(("127.0.0.1", self.port))
            self.port = self.holder.getsockname()[1]
        except OSError:
            self.holder.close()
            raise

    def release(self) -> None:
        """Let go of the port (before starting, and at stop)."""
        holder, self.holder = self.holder, None
        if holder is not None:
            holder.close()

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Write the config, start Alertmanager and wait until it says it is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "alertmanager.yml"
        config.write_text(CONFIG)
        self.release()
        with (self.workdir / "alertmanager.log").open("ab") as out:
            self.process = subprocess.Popen(
                [alertmanager(), f"--config.file={config}",
                 f"--storage.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--cluster.listen-address="],
                stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout, "Alertmanager to be ready")

    def _ready(self) -> bool:
        process = self.process
        assert process is not None
        if process.poll() is not None:
            raise AssertionError(f"Alertmanager exited with {process.returncode}: "
                                 f"{self.output()}")
        if not tcp_open(self.port):
            return False
        try:
            self._get("/-/ready")
        except urllib.error.URLError:  # 503 until it has loaded its config
            return False
        return True

    def _get(self, path: str) -> bytes:
        """The body of a 2xx answer to GET `path`; urllib's errors otherwise."""
        # The URL is always http://127.0.0.1:PORT/..., so no other scheme is opened.
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:  # noqa: S310
            body: bytes = answer.read()
        return body

    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts it holds."""
        found: list[dict[str, Any]] = json.loads(self._get("/api/v2/alerts"))
        return found

    def output(self) -> str:
        """What Alertmanager logged."""
        path = self.workdir / "alertmanager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        process, self.process = self.process, None
        self.release()
        if process is not None and process.poll() is None:
            terminate(process, timeout)
