"""What the collector remembers about one native stream: which datagrams it has seen (the
replay window), which it has given up on (lost lines), and long lines being reassembled.

Lines are handed on the moment their datagram arrives, in whatever order datagrams come;
only the loss accounting waits. A missing datagram is counted lost once it is final: when
the datagrams after it have waited `wait` seconds for it, or when the stream has moved
`window` datagrams past it. A datagram that turns up after that is dropped as `late`, so
that a line is never both counted lost and stored. The lines a lost datagram held are
known from the line numbers of the datagrams around it (each datagram carries the stream
index of its first line), so loss is counted in lines, not datagrams.

Memory is bounded: a stream holds at most `max_pending` datagrams above a gap (past that
its lowest gap is given up on, counted lost, as if it had waited) and `MAX_PARTIALS` long
lines being joined (past that the oldest is given up on). Evictions are counted in the
`evicted` counter the caller passes, by reason. The caller (the decoder) bounds the totals
over all streams with `give_up_gap` and `give_up_partial`; lines those lose are `owed` and
reported with the stream's next datagram, under its own app and source.

Pure: the caller passes the clock.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field

from logwire.native import Part

# A collector that starts (or restarts) in the middle of a stream accepts this many
# datagrams from before the first one it sees, in case they were merely reordered, and
# counts no loss before that first datagram: it cannot know what it missed while down.
REJOIN_MARGIN = 64
MAX_PARTIALS = 16
# What a long line being joined costs besides its bytes, as counted against the listener's
# bound on partial bytes (measured: a Partial and its dict; a part's bytes object and slot),
# so that many tiny parts cannot hold more memory than the bound says.
PARTIAL_COST = 256
PART_COST = 128
_LOST_RANGES = 64


@dataclass(slots=True)
class Partial:
    """A long line whose parts are arriving."""

    first_seq: int
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)
    # Bytes held, bookkeeping included (PARTIAL_COST, PART_COST).
    size: int = PARTIAL_COST

    @property
    def last_seq(self) -> int:
        """Sequence number of the datagram with the final part."""
        return self.first_seq + self.count - 1


class StreamTracker:
    """Replay window, loss accounting and reassembly for one (key id, stream id)."""

    __slots__ = ("_arrivals", "_heap", "_lost_ranges", "dropped_total", "evicted",
                 "max_pending", "next_line", "next_seq", "owed", "partial_bytes", "partials",
                 "pending", "wait", "window")

    def __init__(self, first_seq: int, window: int, wait: float, dropped_total: int = 0, *,
                 max_pending: int | None = None, evicted: Counter[str] | None = None
                 ) -> None:
        self.next_seq = first_seq - min(first_seq, REJOIN_MARGIN)
        # The line index expected next: unknown unless the stream's very first datagram
        # came first (a collector that restarts must not count what its predecessor
        # stored as lost).
        self.next_line: int | None = 0 if first_seq == 0 else None
        # Datagrams above a gap: seq -> (first line, end line).
        self.pending: dict[int, tuple[int, int]] = {}
        self._heap: list[int] = []
        # Made when first needed: an empty deque costs 600 bytes, and most streams of
        # many never wait for a gap.
        self._arrivals: deque[tuple[float, int]] | None = None
        self._lost_ranges: list[tuple[int, int]] = []
        self.partials: dict[int, Partial] = {}
        # The sender's dropped total is cumulative over its stream. Joined part way (a
        # restart, or the stream was forgotten), what it already says was reported by a
        # predecessor or lost with it: only growth from here on is reported, as with loss.
        self.dropped_total = 0 if first_seq == 0 else dropped_total
        self.window = max(1, window)
        self.wait = wait
        # The window bounds pending already; a smaller bound keeps many streams affordable.
        self.max_pending = max(1, min(self.window, max_pending or self.window))
        self.evicted: Counter[str] = Counter() if evicted is None else evicted
        # Bytes held in `partials`, bookkeeping included.
        self.partial_bytes = 0
        # Lines lost by giving up on gaps or partial lines outside this stream's own
        # datagrams (to bound the listener's totals), reported with its next datagram.
        self.owed = 0

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
                self.evicted["stream_partials"] += 1
                lost += self.give_up_partial()
            partial = self.partials[line] = Partial(seq - part.index, part.count)
            self.partial_bytes += partial.size
        partial.parts[part.index] = part.data
        partial.size += len(part.data) + PART_COST
        self.partial_bytes += len(part.data) + PART_COST
        if len(partial.parts) < partial.count:
            return None, lost
        self._forget_partial(line)
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
        lost = self.owed
        self.owed = 0
        floor = seq - self.window + 1
        if floor > self.next_seq:
            lost += self._advance(floor)
        if seq == self.next_seq:
            lost += self._take(entry)
        else:
            self.pending[seq] = entry
            heapq.heappush(self._heap, seq)
            if self._arrivals is None:
                self._arrivals = deque()
            self._arrivals.append((now, seq))
        lost += self._settle(now)
        while len(self.pending) > self.max_pending:
            self.evicted["stream_pending"] += 1
            lost += self.give_up_gap()
        if self.partials:
            lost += self._resolve_partials()
        self._compact()
        return lost

    def give_up_gap(self) -> int:
        """Treat the lowest gap as final now, as if it had waited (to free memory): move
        past it, take what arrived after it; return the lines now known to be lost."""
        lowest = self._lowest()
        if lowest is None:
            return 0
        lost = self._advance(lowest + 1)
        while self.pending:
            entry = self.pending.pop(self.next_seq, None)
            if entry is None:
                break
            lost += self._take(entry)
        if not self.pending:
            self._heap.clear()
            self._arrivals = None
        if self.partials:
            lost += self._resolve_partials()
        return lost

    def give_up_partial(self) -> int:
        """Drop the oldest long line being joined (to free memory); lines lost (0 or 1)."""
        line = next(iter(self.partials))
        partial = self._forget_partial(line)
        # A line whose final part never came is counted by the line numbers around the gap.
        return 1 if partial.count - 1 in partial.parts else 0

    def _forget_partial(self, line: int) -> Partial:
        partial = self.partials.pop(line)
        self.partial_bytes -= partial.size
        return partial

    def _compact(self) -> None:
        """Drop the heap's and arrival queue's entries for datagrams no longer pending,
        which are otherwise only removed lazily, so that they stay bounded by it."""
        limit = 2 * len(self.pending) + 64
        if len(self._heap) > limit:
            self._heap = sorted(self.pending)
        if self._arrivals is not None and len(self._arrivals) > limit:
            self._arrivals = deque(a for a in self._arrivals if a[1] in self.pending)

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
            self._arrivals = None
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
            if len(self._lost_ranges) > _LOST_RANGES:
                del self._lost_ranges[0]
            self.next_seq = stop
        return lost

    def _lowest(self) -> int | None:
        heap = self._heap
        while heap and (heap[0] < self.next_seq or heap[0] not in self.pending):
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _oldest_arrival(self) -> float | None:
        arrivals = self._arrivals
        if arrivals is None:
            return None
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
                self._forget_partial(line)
                if partial.count - 1 in partial.parts:
                    lost += 1
        return lost
