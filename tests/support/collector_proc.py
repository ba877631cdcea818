"""A real `collector serve` subprocess with its own ports and data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.net import free_port, free_udp_port, wait_for

# The config section most end-to-end tests start with: a crypto listener on a free port
# (`collector.port("crypto")`), its secret from the environment's LOG_SECRET.
CRYPTO_LISTENER = """
[listener:crypto]
udp = 127.0.0.1:{port:crypto}
format = crypto
secret = $(LOG_SECRET)
"""


@dataclass
class CollectorProcess:
    """Runs `python -m collector serve --config FILE` and talks to it.

    `config` is the ini text after the [collector] section; `{http}`, `{data}` and any
    `{port:NAME}` placeholders are filled in with free loopback ports. `settings` are
    further `key = value` lines of the [collector] section (e.g. a benchmark's
    `log-level = warning`).
    """

    workdir: Path
    config: str = ""
    env: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    http_port: int = field(default_factory=free_port)
    udp_ports: dict[str, int] = field(default_factory=dict)
    # A command the collector runs under (e.g. setpriv, to drop a capability).
    prefix: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    settings: dict[str, str] = field(default_factory=dict)

    def port(self, name: str) -> int:
        """A UDP port reserved under `name` (the same one on every restart)."""
        if name not in self.udp_ports:
            self.udp_ports[name] = free_udp_port()
        return self.udp_ports[name]

    @property
    def url(self) -> str:
        """The API's base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def data_dir(self) -> Path:
        """The collector's data directory."""
        return self.workdir / "data"

    @property
    def config_path(self) -> Path:
        """Where the ini file is written."""
        return self.workdir / "collector.ini"

    def write_config(self) -> Path:
        """Write the ini file: [collector] with the test's ports, then `config`."""
        head = [
            "[collector]",
            f"data-dir = {self.data_dir}",
            f"http = 127.0.0.1:{self.http_port}",
        ]
        if self.token:
            head.append(f"api-token = {self.token}")
        head += [f"{key} = {value}" for key, value in self.settings.items()]
        body = self.config
        for name in list(self.udp_ports) + _placeholders(body):
            body = body.replace(f"{{port:{name}}}", str(self.port(name)))
        self.config_path.write_text("\n".join(head) + "\n\n" + body + "\n")
        return self.config_path

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until /healthz answers."""
        self.write_config()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with (self.workdir / f"collector-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "collector", "serve", "--config",
                 str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self.starts += 1
        wait_for(self._healthy, timeout, "the collector to answer /healthz")

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"collector exited with {self.process.returncode}:\n"
                                 f"{self.output()}")
        try:
            return bool(self.get("/healthz")["status"] == "ok")
        except (OSError, ValueError):
            return False

    def output(self) -> str:
        """Everything the process printed, across restarts."""
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.workdir.glob("collector-*.log")))

    def stop(self, timeout: float = 20.0, signum: int = signal.SIGTERM) -> int:
        """SIGTERM (or `signum`) and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill9(self) -> None:
        """SIGKILL: no flush, no goodbye."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def request(self, path: str, method: str = "GET", body: Any = None,
                token: str | None = None) -> tuple[int, bytes]:
        """One HTTP request to the API: status and body."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        bearer = token if token is not None else self.token
        if bearer:
            req.add_header("Authorization", f"Bearer {bearer}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def get(self, path: str) -> Any:
        """GET a JSON document; fails on a non-200 answer."""
        status, body = self.request(path)
        if status != 200:
            raise AssertionError(f"GET {path} answered {status}: {body[:300]!r}")
        return json.loads(body)

    def metrics(self) -> dict[str, float]:
        """/metrics as {'name{labels}': value}, labels in name order (as prometheus-client
        writes them)."""
        status, body = self.request("/metrics")
        assert status == 200, body
        values: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def wait_metrics(self, ready: Callable[[dict[str, float]], bool], timeout: float,
                     what: str) -> dict[str, float]:
        """Poll /metrics until `ready(metrics)` holds; return those metrics."""
        def check() -> dict[str, float] | None:
            metrics = self.metrics()
            return metrics if ready(metrics) else None

        return wait_for(check, timeout, what)

    def close(self) -> None:
        """Kill the process if it is still running (test teardown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run `collector ARGS --url THIS` to completion."""
        env = {**os.environ, "COLLECTOR_URL": self.url}
        if self.token:
            env["COLLECTOR_TOKEN"] = self.token
        return subprocess.run([sys.executable, "-m", "collector", *args], env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def popen_cli(self, *args: str) -> subprocess.Popen[str]:
        """Start `collector ARGS` (e.g. `tail -f`) in the background, output piped."""
        env = {**os.environ, "COLLECTOR_URL": self.url, "PYTHONUNBUFFERED": "1"}
        if self.token:
            env["COLLECTOR_TOKEN"] = self.token
        return subprocess.Popen([sys.executable, "-m", "collector", *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _placeholders(text: str) -> list[str]:
    names: list[str] = []
    start = 0
    while (index := text.find("{port:", start)) >= 0:
        end = text.index("}", index)
        names.append(text[index + 6:end])
        start = end
    return names
