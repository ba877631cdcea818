"""uWSGI request log lines parsed into fields (core/logging.c, the default format).

    [pid: 12|app: 0|req: 3/7] 10.0.0.1 () {34 vars in 512 bytes} [Tue Nov 24 20:00:00 2026]
    GET /x => generated 12 bytes in 5 msecs (HTTP/1.1 200) 2 headers in 79 bytes
    (1 switches on core 0)

with `memory-report`'s `{address space usage: ...} {rss usage: ...}` and `vhost`'s host
allowed before it, `micros` instead of `msecs` under `log-micros`, and `via sendfile` and
the like after the unit. The default format does not name the worker; `WorkerMap` learns
it from the master's `spawned uWSGI worker N (pid: P, ...)` lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REQUEST = re.compile(
    r"\[pid: (?P<pid>\d+)\|app: -?\d+\|req: -?\d+/\d+\] \S* \(.*?\) "
    r"\{\d+ vars in \d+ bytes\} \[[^\]]*\] (?P<method>\S+) (?P<path>.*?) "
    r"=> generated (?P<size>\d+) bytes in (?P<time>\d+) (?P<unit>msecs|micros) "
    r"(?:via \S+ )?\((?:\S+|-) (?P<status>\d+)\)")
_SPAWNED = re.compile(r"(?:spawned uWSGI worker (\d+) \(pid: (\d+)"
                      r"|Respawned uWSGI worker (\d+) \(new pid: (\d+)\))")


@dataclass(frozen=True, slots=True)
class RequestFields:
    """What a request log line says about the request."""

    method: str
    path: str
    status: int
    msecs: float
    size: int
    pid: int


def parse_request_line(line: str) -> RequestFields | None:
    """Fields of a uWSGI request log line, or None for any other line."""
    if "[pid: " not in line:
        return None
    match = _REQUEST.search(line)
    if match is None:
        return None
    elapsed = int(match["time"])
    return RequestFields(
        method=match["method"], path=match["path"], status=int(match["status"]),
        msecs=elapsed / 1000 if match["unit"] == "micros" else float(elapsed),
        size=int(match["size"]), pid=int(match["pid"]))


def parse_spawn_line(line: str) -> tuple[int, int] | None:
    """(worker id, pid) from a master's spawn or respawn line."""
    if "uWSGI worker" not in line:
        return None
    match = _SPAWNED.search(line)
    if match is None:
        return None
    worker, pid = (match[1], match[2]) if match[1] else (match[3], match[4])
    return int(worker), int(pid)


class WorkerMap:
    """pid to worker id per (app, source), learned from spawn lines; bounded in size."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._workers: dict[tuple[str, str, int], int] = {}
        self._max_entries = max_entries

    def learn(self, app: str, source: str, line: str) -> None:
        """Remember the worker a spawn line announces."""
        found = parse_spawn_line(line)
        if found is None:
            return
        if len(self._workers) >= self._max_entries:
            self._workers.clear()
        self._workers[(app, source, found[1])] = found[0]

    def worker(self, app: str, source: str, pid: int) -> int | None:
        """The worker id of `pid`, if its spawn line was seen."""
        return self._workers.get((app, source, pid))
