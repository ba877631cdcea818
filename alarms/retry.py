"""When to try a failed delivery again: exponential backoff with jitter, then dead letters.

Pure: the caller brings the clock and the random draw, so the schedule is testable.
"""

from __future__ import annotations

from alarms.spec import RetryPolicy


def retry_delay(failures: int, policy: RetryPolicy, draw: float) -> float:
    """Seconds to wait after the `failures`-th failed attempt (`draw` uniform in [0, 1)).

    The ceiling doubles with each failure from `backoff` up to `max_backoff`; the wait is
    drawn from the upper half of it ("equal jitter"), so receivers that come back are not
    hit by every collector's retries at once, and a retry never comes sooner than half the
    ceiling.
    """
    ceiling = min(policy.max_backoff, policy.backoff * 2.0 ** max(0, failures - 1))
    return ceiling / 2 + ceiling / 2 * draw


def next_attempt(failures: int, permanent: bool, policy: RetryPolicy, now: float,
                 draw: float) -> float | None:
    """When to try again after `failures` failed attempts; None when the entry is dead
    (the failure was permanent, or `policy.attempts` attempts have been made)."""
    if permanent or failures >= policy.attempts:
        return None
    return now + retry_delay(failures, policy, draw)
