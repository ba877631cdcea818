"""Shared ids checkpoints (collector.cluster.anchor), fed values: which checkpoint a late
joiner starts from, and the stored form."""

from __future__ import annotations

import pytest

from collector.cluster.anchor import choose, dumps, key, loads, seq_of
from collector.cluster.checkpoint import Position


def test_choose_takes_the_oldest_checkpoint_still_covered_by_the_stream() -> None:
    """The oldest checkpoint at or past first_seq - 1 loses the least history."""
    seqs = [4096, 8192, 12288]
    assert choose(seqs, 1) == 4096
    assert choose(seqs, 4097) == 4096  # every message after 4096 is still there
    assert choose(seqs, 4098) == 8192  # message 4097 is gone: 4096 would guess its ids
    assert choose(seqs, 20000) is None
    assert choose([], 5) is None


def test_keys_name_their_sequence_and_nothing_else() -> None:
    """A checkpoint key round-trips to its sequence; other keys are not checkpoints."""
    assert seq_of(key(4096)) == 4096
    assert key(1) < key(10) < key(4096)  # listing order is sequence order
    assert seq_of("alarms-leader") is None
    assert seq_of("s") is None
    assert seq_of("s-12") is None


def test_stored_form_round_trips_and_rejects_others() -> None:
    """dumps/loads keep sequence, last id and applied batches; junk is a ValueError."""
    position = Position(4096, 1_700_000_000_123_456, {"a.0f0f": [12, 15]})
    assert loads(dumps(position)) == position
    for junk in (b"{}", b'{"v": 2, "seq": 1}', b"[1]", b'{"v": 1, "seq": 1}'):
        with pytest.raises(ValueError, match=r"."):
            loads(junk)
