"""A real uWSGI (built with logcrypto) running a small WSGI app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_port, tcp_open, wait_for
from tests.support.process import terminate

APP = '''
import ctypes, os, sys, time

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        start_response(f"{code} X", [("Content-Type", "text/plain")])
        return [b"status\\n"]
    if path == "/segfault":
        ctypes.string_at(0)
    if path.startswith("/sleep/"):
        time.sleep(float(path.rsplit("/", 1)[1]))
    if path.startswith("/say/"):
        print(path[5:], file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\\n"]
'''


def uwsgi_binary() -> Path:
    """The uWSGI built into the venv by `make test` (with logcrypto embedded)."""
    candidate = Path(sys.executable).parent / "uwsgi"
    found = candidate if candidate.exists() else (shutil.which("uwsgi") and
                                                  Path(shutil.which("uwsgi") or ""))
    if not found:
        raise AssertionError("uWSGI is not installed in the venv: run `make test`, which "
                             "builds it with UWSGI_EMBED_PLUGINS=logcrypto")
    return Path(found)


@dataclass
class UwsgiProcess:
    """uWSGI with `http-socket` on a free port and the given extra ini lines."""

    workdir: Path
    lines: list[str]
    processes: int = 2
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        """Write app.py and uwsgi.ini, start uWSGI, wait for its HTTP socket."""
        (self.workdir / "app.py").write_text(APP)
        ini = ["[uwsgi]", f"http-socket = 127.0.0.1:{self.port}", "master = true",
               f"processes = {self.processes}", "die-on-term = true", "wsgi-file = app.py",
               "log-master = true", *self.lines]
        (self.workdir / "uwsgi.ini").write_text("\n".join(ini) + "\n")
        with (self.workdir / "uwsgi.log").open("wb") as out:
            self.process = subprocess.Popen([str(uwsgi_binary()), "--ini", "uwsgi.ini"],
                                            cwd=self.workdir, stdout=out,
                                            stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env})
        wait_for(self._up, timeout, "uWSGI to accept HTTP connections")

    def _up(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"uWSGI exited with {self.process.returncode}:\n"
                                 f"{self.output()}")
        return tcp_open(self.port)

    def output(self) -> str:
        """What uWSGI printed to its own stdout/stderr."""
        path = self.workdir / "uwsgi.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def get(self, path: str, timeout: float = 10.0) -> int:
        """GET a path from the app; returns the HTTP status (errors included)."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (die-on-term) and wait."""
        if self.process is None:
            return 0
        code = terminate(self.process, timeout)
        self.process = None
        return code


def wait_for_spawn_lines(collector: CollectorProcess, app: str, workers: int,
                         timeout: float = 15.0) -> None:
    """Wait until `collector tail` shows the master's `spawned uWSGI worker` line for each
    of `workers` workers of `app`. A request's worker number comes from the spawn line
    for its pid, and the master and the workers send their own datagrams: on a busy
    machine a request's line can arrive first, its worker then unknown."""
    def spawned() -> bool:
        done = collector.cli("tail", "--json", "-n", "1000", "--app", app)
        found = [json.loads(line) for line in done.stdout.splitlines() if line]
        return sum("spawned uWSGI worker" in r["line"] for r in found) >= workers

    wait_for(spawned, timeout, f"the master's spawn lines for {app} in tail")
