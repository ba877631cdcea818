"""Record ids in stream order: the same on every node, from the stream's own clock."""

from __future__ import annotations


def assign(last: int, timestamp_us: int, count: int) -> tuple[int, int]:
    """The first id for a message's `count` records and the new last id.

    `first = max(last + 1, timestamp_us)`: ids stay receive times in microseconds (the
    stream leader's, stored with the message and identical on every replica), bumped past
    the previous message's where the clock stands still or went back, so every node that
    applies the same messages in the same order computes the same ids.
    """
    first = max(last + 1, timestamp_us)
    return first, first + count - 1 if count else last
