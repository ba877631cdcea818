"""Batching for the sidecar: lines in, datagrams out, memory bounded. Pure.

Lines wait in one queue, in arrival order. A datagram is sealed as soon as the lines at the
head of the queue fill it, or once the oldest of them has waited `delay` seconds; a line
too long for one datagram goes out as parts. When the queue is over its bounds (the
sidecar cannot send as fast as lines come), the oldest lines are dropped and counted, and
the count travels in every later datagram so the collector can say so.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from shipper.encoder import StreamEncoder


@dataclass(slots=True)
class Queued:
    """A line waiting to be sent, with its origin and arrival time."""

    app: bytes
    source: bytes
    line: bytes
    at: float


class Batcher:
    """Queues lines and turns them into datagrams when they are due."""

    def __init__(self, encoder: StreamEncoder, delay: float = 0.02, max_lines: int = 20_000,
                 max_bytes: int = 8 << 20) -> None:
        self.encoder = encoder
        self.delay = delay
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._queue: deque[Queued] = deque()
        self._bytes = 0
        self.lines_in = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def dropped(self) -> int:
        """Lines dropped so far because the queue was full."""
        return self.encoder.dropped_total

    def add(self, app: bytes, source: bytes, line: bytes, now: float) -> None:
        """Queue one line (without its newline); drop the oldest if over the bounds."""
        self._queue.append(Queued(app, source, line, now))
        self._bytes += len(line)
        self.lines_in += 1
        while len(self._queue) > self.max_lines or self._bytes > self.max_bytes:
            oldest = self._queue.popleft()
            self._bytes -= len(oldest.line)
            self.encoder.dropped_total += 1

    def deadline(self) -> float | None:
        """When the oldest queued line becomes due, or None with nothing queued."""
        return self._queue[0].at + self.delay if self._queue else None

    def take(self, now: float, force: bool = False) -> list[bytes]:
        """The datagrams that are ready: every full one, and the last partly filled one
        when its oldest line is due (or `force`, at exit)."""
        out: list[bytes] = []
        encoder = self.encoder
        queue = self._queue
        micros = int(now * 1e6)
        while queue:
            head = queue[0]
            app, source = head.app, head.source
            room = encoder.room(app, source)
            if encoder.record_size(head.line) > room:
                queue.popleft()
                self._bytes -= len(head.line)
                out.extend(encoder.seal_long_line(app, source, head.line, micros))
                continue
            count, used, full = 0, 0, False
            for item in queue:
                if item.app != app or item.source != source:
                    full = True
                    break
                size = encoder.record_size(item.line)
                if used + size > room:
                    full = True
                    break
                used += size
                count += 1
            if not full and not force and now < head.at + self.delay:
                break
            lines = [queue.popleft().line for _ in range(count)]
            self._bytes -= sum(len(line) for line in lines)
            out.append(encoder.seal_lines(app, source, lines, micros))
        return out
