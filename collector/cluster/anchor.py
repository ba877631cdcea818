"""Shared ids checkpoints: where a node that joins after retention cut the stream's head
starts, so that it gives the same ids as the nodes that saw the stream from the start.

Ids follow `max(last + 1, message timestamp)` (collector.cluster.ids), so a message's ids
depend on the messages before it whenever a burst pushed ids past the clock. A node that
cannot read those messages any more (cut by `retention` or `retention-size`) starts from
a checkpoint instead: (stream sequence, last id, applied batches) as every node computed
them after that sequence. The materializers write one every `SHARE_EVERY` messages into
the KV bucket `ids`, key `s<sequence>` (create-if-absent: every node computes the same
one, the first write stands), expiring with the log's own retention. A joiner starts
after the oldest checkpoint still at or past the stream's head, and so lacks at most the
`SHARE_EVERY` messages before it (which retention is about to cut anyway).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable

from collector.cluster.checkpoint import Position
from collector.cluster.kv import Bucket

BUCKET = "ids"
SHARE_EVERY = 4096
_PREFIX = "s"


def key(seq: int) -> str:
    """The KV key of the checkpoint after stream sequence `seq`."""
    return f"{_PREFIX}{seq:016d}"


def seq_of(name: str) -> int | None:
    """The sequence a key names; None for a key that is not a checkpoint's."""
    digits = name[len(_PREFIX):]
    if not name.startswith(_PREFIX) or not digits.isdigit():
        return None
    return int(digits)


def choose(seqs: Iterable[int], first_seq: int) -> int | None:
    """The checkpoint to start from when the stream now begins at `first_seq`: the oldest
    one from which every later message is still in the stream (at or past
    `first_seq - 1`), losing the least history; None when there is none."""
    usable = [s for s in seqs if s >= first_seq - 1]
    return min(usable) if usable else None


def dumps(position: Position) -> bytes:
    """A checkpoint's stored form."""
    return json.dumps({"v": 1, "seq": position.seq, "last_id": position.last_id,
                       "applied": position.applied}, separators=(",", ":")).encode()


def loads(value: bytes) -> Position:
    """Inverse of `dumps`; ValueError for anything else."""
    try:
        doc = json.loads(value)
        if doc.get("v") != 1:
            raise ValueError(f"unknown checkpoint version {doc.get('v')!r}")
        applied = {str(k): [int(n) for n in v] for k, v in dict(doc["applied"]).items()}
        return Position(int(doc["seq"]), int(doc["last_id"]), applied)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a checkpoint: {exc}") from None


class Anchors:
    """The `ids` bucket as the materializer uses it."""

    def __init__(self, bucket: Callable[[], Awaitable[Bucket]]) -> None:
        self._open = bucket
        self._bucket: Bucket | None = None
        self.shared_seq = 0  # the newest checkpoint this node wrote or found

    async def _get_bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = await self._open()
        return self._bucket

    async def share(self, position: Position) -> bool:
        """Write a checkpoint when `position` is `SHARE_EVERY` past the last one; whether
        one was due. ClusterError when NATS did not answer."""
        if position.seq < self.shared_seq + SHARE_EVERY:
            return False
        bucket = await self._get_bucket()
        await bucket.create(key(position.seq), dumps(position))
        self.shared_seq = position.seq
        return True

    async def start_for(self, first_seq: int) -> Position | None:
        """The checkpoint a node whose own position is behind the stream's head starts
        from; None when no usable one exists. ClusterError when NATS did not answer."""
        bucket = await self._get_bucket()
        found = {s: item for item in await bucket.items()
                 if (s := seq_of(item.key)) is not None}
        chosen = choose(found, first_seq)
        if chosen is None:
            return None
        self.shared_seq = max(found)
        return loads(found[chosen].value)
