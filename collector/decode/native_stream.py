"""What the collector remembers about one native stream: which datagrams it has seen (the
replay window), which it has given up on (lost lines), and long lines being reassembled.

Lines are handed on the moment their datagram arrives, in whatever order datagrams come;
only the loss accounting waits. A missing datagram is counted lost once it is final: when
the datagrams after it have waited `wait` seconds for it, or when the stream has moved
`window` datagrams past it. A datagram that turns up after that is dropped as `late`, so
that a line is never both counted lost and stored. The lines a lost datagram held are
known from the line numbers of the datagrams around it (each datagram carries the stream
index of its first line), so loss is counted in lines, not datagrams.

Pure: the caller passes the clock.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from collector.decode.native_wire import Part

# A collector that starts (or restarts) in the middle of a stream accepts this many
# datagrams from before the first one it sees, in case they were merely reordered, and
# counts no loss before that first datagram: it cannot know what it missed while down.
REJOIN_MARGIN = 64
MAX_PARTIALS = 16
_LOST_RANGES = 64


@dataclass(slots=True)
class Partial:
    """A long line whose parts are arriving."""

    first_seq: int
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        """Sequence number of the datagram with the final part."""
        return self.first_seq + self.count - 1


class StreamTracker:
    """Replay window, loss accounting and reassembly for one (key id, stream id)."""

    __slots__ = ("_arrivals", "_heap", "_lost_ranges", "dropped_total", "next_line",
                 "next_seq", "partials", "pending", "wait", "window")

    def __init__(self, first_seq: int, window: int, wait: float, dropped_total: int = 0
                 ) -> None:
        self.next_seq = first_seq - min(first_seq, REJOIN_MARGIN)
        # The line index expected next: unknown unless the stream's very first datagram
        # came first (a collector that restarts must not count what its predecessor
        # stored as lost).
        self.next_line: int | None = 0 if first_seq == 0 else None
        # Datagrams above a gap: seq -> (first line, end line).
        self.pending: dict[int, tuple[int, int]] = {}
        self._heap: list[int] = []
        self._arrivals: deque[tuple[float, int]] = deque()
        self._lost_ranges: deque[tuple[int, int]] = deque(maxlen=_LOST_RANGES)
        self.partials: dict[int, Partial] = {}
        # The sender's dropped total is cumulative over its stream. Joined part way (a
        # restart, or the stream was forgotten), what it already says was reported by a
        # predecessor or lost with it: only growth from here on is reported, as with loss.
        self.dropped_total = 0 if first_seq == 0 else dropped_total
        self.window = max(1, window)
        self.wait = wait

    def check(self, seq: int) -> str | None:
        """Why the datagram `seq` must be dropped (`replay`, `late`), or None."""
        if seq < self.next_seq:
            for start, end in self._lost_ranges:
                if start <= seq < end:
                    return "late"
            return "replay"
        if seq in self.pending:
            return "replay"
        return None

    def check_part(self, seq: int, line: int, part: Part) -> bool:
        """Whether a part fits what is known of its line (a sender bug otherwise)."""
        first_seq = seq - part.index
        if first_seq < 0:
            return False
        known = self.partials.get(line)
        return known is None or (known.first_seq, known.count) == (first_seq, part.count)

    def add_part(self, seq: int, line: int, part: Part) -> tuple[bytes | None, int]:
        """File a part (checked with `check_part`); the whole line once complete, and the
        lines given up to make room."""
        lost = 0
        partial = self.partials.get(line)
        if partial is None:
            if len(self.partials) >= MAX_PARTIALS:
                lost += self._evict_partial()
            partial = self.partials[line] = Partial(seq - part.index, part.count)
        partial.parts[part.index] = part.data
        if len(partial.parts) < partial.count:
            return None, lost
        del self.partials[line]
        return b"".join(partial.parts[i] for i in range(partial.count)), lost

    def note_dropped(self, dropped_total: int) -> int:
        """Lines the sender says it dropped since the last count seen (counts only grow,
        so the largest seen is the truth whatever the arrival order)."""
        if dropped_total <= self.dropped_total:
            return 0
        delta = dropped_total - self.dropped_total
        self.dropped_total = dropped_total
        return delta

    def accept(self, seq: int, first_line: int, lines_ended: int, now: float) -> int:
        """Record a datagram that passed `check`; return the lines now known to be lost."""
        entry = (first_line, first_line + lines_ended)
        lost = 0
        floor = seq - self.window + 1
        if floor > self.next_seq:
            lost += self._advance(floor)
        if seq == self.next_seq:
            lost += self._take(entry)
        else:
            self.pending[seq] = entry
            heapq.heappush(self._heap, seq)
            self._arrivals.append((now, seq))
        lost += self._settle(now)
        if self.partials:
            lost += self._resolve_partials()
        return lost

    def _take(self, entry: tuple[int, int]) -> int:
        first, end = entry
        lost = 0
        if self.next_line is None:
            self.next_line = end
        else:
            if first > self.next_line:
                lost = first - self.next_line
            self.next_line = max(self.next_line, end)
        self.next_seq += 1
        return lost

    def _settle(self, now: float) -> int:
        """Take pending datagrams in order; close a gap once it has waited long enough."""
        lost = 0
        while self.pending:
            entry = self.pending.pop(self.next_seq, None)
            if entry is not None:
                lost += self._take(entry)
                continue
            oldest = self._oldest_arrival()
            if oldest is None or now - oldest < self.wait:
                break
            lowest = self._lowest()
            if lowest is None:
                break
            lost += self._advance(lowest)
        if not self.pending:
            self._heap.clear()
            self._arrivals.clear()
        return lost

    def _advance(self, target: int) -> int:
        """Move past everything below `target`: take what arrived, give up on the rest."""
        lost = 0
        while self.next_seq < target:
            entry = self.pending.pop(self.next_seq, None)
            if entry is not None:
                lost += self._take(entry)
                continue
            lowest = self._lowest()
            stop = target if lowest is None else min(lowest, target)
            self._lost_ranges.append((self.next_seq, stop))
            self.next_seq = stop
        return lost

    def _lowest(self) -> int | None:
        heap = self._heap
        while heap and (heap[0] < self.next_seq or heap[0] not in self.pending):
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _oldest_arrival(self) -> float | None:
        arrivals = self._arrivals
        while arrivals and arrivals[0][1] < self.next_seq:
            arrivals.popleft()
        return arrivals[0][0] if arrivals else None

    def _resolve_partials(self) -> int:
        """Give up on long lines all of whose datagrams are settled but some never came.

        A line whose final part was lost is already counted by the line numbers around
        the gap; one whose final part arrived but an earlier part did not is counted here.
        """
        lost = 0
        for line, partial in list(self.partials.items()):
            if partial.last_seq < self.next_seq:
                del self.partials[line]
                if partial.count - 1 in partial.parts:
                    lost += 1
        return lost

    def _evict_partial(self) -> int:
        line = next(iter(self.partials))
        partial = self.partials.pop(line)
        return 1 if partial.count - 1 in partial.parts else 0
