"""Ending the real processes tests start (servers, uWSGI, `collector tail -f`)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from typing import Any


def terminate(process: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM (a clean shutdown), then SIGKILL if it takes longer than `timeout`; the
    exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


class Follower(threading.Thread):
    """Reads the JSON lines a `collector tail -f --json` process prints into a list."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.records: list[dict[str, Any]] = []

    def run(self) -> None:
        """Collect every JSON line until the process ends."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.records.append(json.loads(line))

    def stop(self) -> str:
        """End the tail process; return what it wrote to stderr."""
        self.process.terminate()
        self.process.wait(10)
        self.join(10)
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        errors = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return errors
