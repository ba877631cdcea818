"""Reading the stream: an ordered consumer behind a small interface that hands out plain
messages and raises only ClusterError (nats-py's Msg and errors stay at this boundary)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from collector.cluster.errors import ClusterError, describe

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One message of the stream: its sequence, the stream leader's timestamp in whole
    microseconds (identical on every replica), its body, and how many follow it now."""

    seq: int
    timestamp_us: int
    data: bytes
    pending: int


def _message(msg: Msg) -> StreamMessage:
    meta = msg.metadata
    return StreamMessage(int(meta.sequence.stream),
                         (meta.timestamp - _EPOCH) // _MICROSECOND, msg.data,
                         int(meta.num_pending))


class Reader:
    """An ordered consumer of the stream (made by Connection.ordered/ordered_since)."""

    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    async def next(self, wait: float) -> StreamMessage | None:
        """The next message, or None when none came within `wait` seconds."""
        try:
            msg = await self._subscription.next_msg(timeout=wait)
        except nats.errors.TimeoutError:
            return None
        except nats.errors.Error as exc:
            raise ClusterError(f"cannot read the stream: {describe(exc)}") from None
        return _message(msg)

    async def close(self) -> None:
        """Stop the consumer (errors ignored: the connection may be gone)."""
        with contextlib.suppress(nats.errors.Error):
            await self._subscription.unsubscribe()
