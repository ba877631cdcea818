"""The segfault line and its backtrace, assembled per source into one alarm message.

uWSGI logs `!!! uWSGI process N got Segmentation Fault !!!`, then writes the backtrace as
one block: `*** backtrace of N ***`, the frames, `*** end of backtrace ***`. The block is
one datagram, so its lines arrive together; the segfault line may be a datagram or more
before it, with other processes' lines in between. Assembly is per source (lines of other
sources never disturb it) and bounded: at most `max_lines` lines, and an assembly that has
not ended `max_wait` seconds after it began is sent with what it has. At most
`max_sources` assemblies are under way at once: past that, the oldest is sent at once with
what it has (and counted as evicted) to make room.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from alarms.bounds import DEFAULT, Evictions
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
                 max_wait: float = 3.0, max_sources: int = DEFAULT.sources,
                 evictions: Evictions | None = None) -> None:
        self._alarms = alarms
        self._max_lines = max_lines
        self._max_wait = max_wait
        self._max_sources = max_sources
        self._evictions = evictions if evictions is not None else Evictions()
        self._open: OrderedDict[str, _Assembly] = OrderedDict()

    def __len__(self) -> int:
        """Assemblies under way."""
        return len(self._open)

    def active(self, source: str) -> bool:
        """Whether an assembly for `source` is under way."""
        return source in self._open

    def feed(self, source: str, line: str, at: float,
             recent: Callable[[], list[str]] = list) -> list[Event]:
        """Take one line of `source`; the Events of the assemblies this ends (usually
        none). `recent` gives the source's lines before this one, kept as the crash's
        context."""
        current = self._open.get(source)
        if current is not None and current.in_backtrace:
            current.lines.append(line)
            current.frames += 1
            if line.startswith(BACKTRACE_END) or len(current.lines) >= self._max_lines:
                return self._finished(source, complete=line.startswith(BACKTRACE_END))
            return []
        crashed = parse_segfault(line) if "!!!" in line else None
        if crashed is not None:
            finished = self._finished(source, complete=False) if current else self._room()
            self._open[source] = _Assembly(crashed[0], crashed[1], at, [line],
                                           context=recent())
            return finished
        finished = []
        if "*** backtrace of" in line:
            pid = parse_backtrace_start(line)
            if pid is not None:
                if current is None:
                    # A backtrace without its segfault line (lost, or another fatal signal):
                    # uWSGI raises alarm-segfault for every backtrace it logs.
                    finished = self._room()
                    current = self._open[source] = _Assembly(pid, "backtrace", at,
                                                             context=recent())
                current.lines.append(line)
                current.in_backtrace = True
        return finished

    def _room(self) -> list[Event]:
        """Make room for one more assembly: when full, the oldest is sent as it is."""
        if len(self._open) < self._max_sources:
            return []
        self._evictions.evicted("segfault", self._max_sources)
        return self._finished(next(iter(self._open)), complete=False)

    def _finished(self, source: str, *, complete: bool) -> list[Event]:
        event = self._finish(source, complete=complete)
        return [event] if event is not None else []

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
