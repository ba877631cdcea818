"""Which of two writes of one outbox entry stands, when a compare-and-set found that
another node wrote the entry since this one read it (pure).

The other write is a second node's step of the same delivery: a former leader's late
write, a node that retried it, an operator's `collector alarms retry` on another node.
What happened outside the outbox decides:

1. The entry is gone (pruned as delivered, or trimmed as a dead letter): it stays gone.
2. A delivery happened: `delivered` wins over any other state, whoever wrote it (the
   receiver has it; sending again would only repeat it). Of two deliveries the stored one
   stands.
3. Our `pending` against their `dead`: theirs (another node gave up; an operator's retry
   brings it back, and sending it from here would bypass that decision).
4. Our `dead` against their `pending`: ours (our retries ran out after theirs), unless
   theirs is a retry an operator asked for after our decision (attempts reset to 0, written
   at or after ours), which wins.
5. Both `dead`: the stored one stands. Both `pending` (two nodes retrying): ours, the
   write of the node delivering it now, with the larger attempt count of the two, so
   retries stay bounded across a takeover.
"""

from __future__ import annotations

from typing import Literal

from alarms.outbox.base import Entry

Winner = Literal["ours", "theirs"]


def resolve(ours: Entry, theirs: Entry | None) -> Winner:
    """Whose write of the entry stands (see the module docstring)."""
    if theirs is None:
        return "theirs"
    if theirs.state == "delivered":
        return "theirs"
    if ours.state == "delivered":
        return "ours"
    if ours.state == "pending":
        return "theirs" if theirs.state == "dead" else "ours"
    # ours is dead
    if theirs.state == "pending":
        requeued = theirs.attempts == 0 and theirs.updated_at >= ours.updated_at
        return "theirs" if requeued else "ours"
    return "theirs"


def merged(ours: Entry, theirs: Entry) -> Entry:
    """Our entry as written over theirs: both pending keep the larger attempt count."""
    if ours.state == "pending" and theirs.state == "pending":
        ours.attempts = max(ours.attempts, theirs.attempts)
    return ours
