"""Coming up: connect to NATS, set up the stream, start materializing; retried in the
background with backoff while no server answers, so a node starts (and spools) without
NATS."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from collector.cluster.errors import ClusterError

log = structlog.get_logger("collector.cluster")

FIRST_DELAY = 0.5
MAX_DELAY = 10.0


def backoff(attempt: int, first: float = FIRST_DELAY, most: float = MAX_DELAY) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): doubling from
    `first`, at most `most`."""
    return min(most, first * float(1 << min(attempt - 1, 32)))


async def bring_up(step: Callable[[], Awaitable[None]], *, first: float = FIRST_DELAY,
                   most: float = MAX_DELAY) -> int:
    """Run `step` until it does not raise ClusterError (each attempt bounded by `step`
    itself); return how many attempts it took. `step` must be safe to repeat."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await step()
        except ClusterError as exc:
            delay = backoff(attempt, first, most)
            log.warning("cluster_not_up", attempt=attempt, error=str(exc),
                        retry_in=round(delay, 2),
                        note="accepting into the spool meanwhile")
            await asyncio.sleep(delay)
            continue
        except Exception:
            # The task's one catch point: a bug must not leave the node spooling for ever
            # in silence; logged with its trace, retried like an outage.
            delay = backoff(attempt, first, most)
            log.exception("cluster_bringup_failed", attempt=attempt, retry_in=delay)
            await asyncio.sleep(delay)
            continue
        if attempt > 1:
            log.info("cluster_up", attempts=attempt)
        return attempt
