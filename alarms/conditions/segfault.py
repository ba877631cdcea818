"""The segfault line and its backtrace, assembled per source into one alarm message.

uWSGI logs `!!! uWSGI process N got Segmentation Fault !!!`, then writes the backtrace as
one block: `*** backtrace of N ***`, the frames, `*** end of backtrace ***`. The block is
one datagram, so its lines arrive together; the segfault line may be a datagram or more
before it, with other processes' lines in between. Assembly is per source (lines of other
sources never disturb it) and bounded: at most `max_lines` lines, and an assembly that has
not ended `max_wait` seconds after it began is sent with what it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from alarms.conditions.event import Event
from alarms.conditions.uwsgi_lines import BACKTRACE_END, parse_backtrace_start, parse_segfault


@dataclass
class _Assembly:
    pid: int
    what: str
    started: float
    lines: list[str] = field(default_factory=list)
    in_backtrace: bool = False
    frames: int = 0
    context: list[str] = field(default_factory=list)


class SegfaultAssembler:
    """Turns segfault lines and backtraces into Events for the given alarms."""

    def __init__(self, alarms: tuple[str, ...], max_lines: int = 200,
                 max_wait: float = 3.0) -> None:
        self._alarms = alarms
        self._max_lines = max_lines
        self._max_wait = max_wait
        self._open: dict[str, _Assembly] = {}

    def active(self, source: str) -> bool:
        """Whether an assembly for `source` is under way."""
        return source in self._open

    def feed(self, source: str, line: str, at: float,
             recent: Callable[[], list[str]] = list) -> Event | None:
        """Take one line of `source`; an Event when an assembly completes. `recent` gives
        the source's lines before this one, kept as the crash's context."""
        current = self._open.get(source)
        if current is not None and current.in_backtrace:
            current.lines.append(line)
            current.frames += 1
            if line.startswith(BACKTRACE_END) or len(current.lines) >= self._max_lines:
                return self._finish(source, complete=line.startswith(BACKTRACE_END))
            return None
        crashed = parse_segfault(line) if "!!!" in line else None
        if crashed is not None:
            finished = self._finish(source, complete=False) if current else None
            self._open[source] = _Assembly(crashed[0], crashed[1], at, [line],
                                           context=recent())
            return finished
        if "*** backtrace of" in line:
            pid = parse_backtrace_start(line)
            if pid is not None:
                if current is None:
                    # A backtrace without its segfault line (lost, or another fatal signal):
                    # uWSGI raises alarm-segfault for every backtrace it logs.
                    current = self._open[source] = _Assembly(pid, "backtrace", at,
                                                             context=recent())
                current.lines.append(line)
                current.in_backtrace = True
        return None

    def expire(self, now: float) -> list[Event]:
        """Send assemblies that waited longer than `max_wait`."""
        late = [s for s, a in self._open.items() if now - a.started >= self._max_wait]
        return [event for s in late if (event := self._finish(s, complete=False))]

    def _finish(self, source: str, *, complete: bool) -> Event | None:
        assembly = self._open.pop(source, None)
        if assembly is None:
            return None
        lines = assembly.lines
        if not complete:
            lines = [*lines, "(backtrace incomplete)" if assembly.in_backtrace
                     else "(no backtrace received)"]
        return Event(self._alarms, "segfault", source, "\n".join(lines), assembly.started,
                     facts={"pid": assembly.pid, "signal": assembly.what,
                            "frames": max(0, assembly.frames - 1), "complete": complete},
                     context=assembly.context)
