"""uWSGI's own alarm-worthy log lines, parsed (texts from uWSGI 2.0's core/*.c).

- core/master.c: `*** uWSGI listen queue of socket "S" (fd: N) full !!! (Q/MAX) ***`,
  logged by uwsgi_log_verbose, so behind a ctime date and " - ";
- core/uwsgi.c: `!!! uWSGI process N got Segmentation Fault !!!`, then one write of
  `*** backtrace of N ***`, the frames, `*** end of backtrace ***`;
- core/master_utils.c: `*** HARAKIRI ON WORKER W (pid: P, try: T, graceful: G) ***`,
  also behind a date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BACKLOG = re.compile(r'\*\*\* uWSGI listen queue of socket "(?P<socket>[^"]*)" '
                      r"\(fd: (?P<fd>\d+)\) full !!! \((?P<queue>\d+)/(?P<max>\d+)\) \*\*\*")
_SEGFAULT = re.compile(r"!!! uWSGI process (?P<pid>\d+) got (?P<what>Segmentation Fault|"
                       r"Floating Point Exception) !!!")
_BACKTRACE = re.compile(r"\*\*\* backtrace of (?P<pid>\d+) \*\*\*")
BACKTRACE_END = "*** end of backtrace ***"
_HARAKIRI = re.compile(r"\*\*\* HARAKIRI ON WORKER (?P<worker>\d+) \(pid: (?P<pid>\d+), "
                       r"try: (?P<try>\d+)(?:, graceful: (?P<graceful>\w+))?\) \*\*\*")


@dataclass(frozen=True)
class Backlog:
    """A full listen queue."""

    socket: str
    fd: int
    queue: int
    max: int

    @property
    def message(self) -> str:
        """The alarm message uWSGI itself would send: the line without date and stars."""
        return (f'listen queue of socket "{self.socket}" (fd: {self.fd}) full !!! '
                f"({self.queue}/{self.max})")


def parse_backlog(line: str) -> Backlog | None:
    """A listen-queue-full line, or None."""
    if "listen queue of socket" not in line:
        return None
    match = _BACKLOG.search(line)
    if match is None:
        return None
    return Backlog(match["socket"], int(match["fd"]), int(match["queue"]), int(match["max"]))


def parse_segfault(line: str) -> tuple[int, str] | None:
    """(pid, "Segmentation Fault" | "Floating Point Exception") or None."""
    if "!!! uWSGI process" not in line:
        return None
    match = _SEGFAULT.search(line)
    return (int(match["pid"]), match["what"]) if match else None


def parse_backtrace_start(line: str) -> int | None:
    """The pid of a `*** backtrace of PID ***` line, or None."""
    if "*** backtrace of" not in line:
        return None
    match = _BACKTRACE.search(line)
    return int(match["pid"]) if match else None


@dataclass(frozen=True)
class Harakiri:
    """A harakiri kill of a worker."""

    worker: int
    pid: int
    attempt: int
    graceful: str | None
    message: str


def parse_harakiri(line: str) -> Harakiri | None:
    """A `HARAKIRI ON WORKER` line, or None."""
    if "HARAKIRI ON WORKER" not in line:
        return None
    match = _HARAKIRI.search(line)
    if match is None:
        return None
    return Harakiri(int(match["worker"]), int(match["pid"]), int(match["try"]),
                    match["graceful"], match.group(0))
