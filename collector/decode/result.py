"""What a decoder returns: the lines a datagram carried, or why it was dropped.

Decoders return their error instead of raising it, so that the listener's hot path has no
exception handling and a bad datagram costs no more than a good one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


# Not frozen: a frozen dataclass's __init__ costs twice as much, and one Lines is made
# per datagram.
@dataclass(slots=True)
class Lines:
    """An accepted datagram: its lines and what the format said about their origin."""

    lines: list[str]
    app: str | None = None
    source: str | None = None
    emitted_at: float | None = None
    escaped: int = 0
    # Lines the collector writes about the stream (`-- 12 lines lost from web.1 --`); they
    # are stored before `lines`, with kind "marker".
    markers: tuple[str, ...] = ()
    # Lines the format says were lost before these (sequence gaps, sender-side drops).
    lost: int = 0


@dataclass(frozen=True, slots=True)
class Dropped:
    """A rejected datagram and the reason it is counted under."""

    reason: str


Decoded = Lines | Dropped


class Decoder(Protocol):
    """Turns one datagram from `peer` into lines; `now` is the collector's clock."""

    format: str

    def decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """Decode one datagram; never raises for bad input."""
        ...
