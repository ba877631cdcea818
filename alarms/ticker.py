"""The alarms' clock: time-driven work every half second, the outbox pruned every hour.

Shared by single-node alarms (alarms.component) and the cluster's leader
(alarms.cluster), each passing what one tick does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from collector.errors import StoreError

log = structlog.get_logger("alarms")

TICK_SECONDS = 0.5
PRUNE_SECONDS = 3600.0


async def tick_forever(step: Callable[[], Awaitable[None]],
                       prune: Callable[[], Awaitable[object]]) -> None:
    """Run `step` every TICK_SECONDS and `prune` every PRUNE_SECONDS, until cancelled.

    One catch point for `step`: a bug in a time-driven condition is logged once and the
    ticks go on, so silences and backtraces still expire. A prune that cannot write is
    logged and tried again an hour later.
    """
    next_prune = 0.0
    loop = asyncio.get_running_loop()
    failed = False
    while True:
        try:
            await step()
        except Exception:
            if not failed:
                log.exception("alarm_tick_failed")
            failed = True
        if loop.time() >= next_prune:
            next_prune = loop.time() + PRUNE_SECONDS
            try:
                await prune()
            except StoreError as exc:
                log.error("alarm_outbox_prune_failed", error=str(exc))
        await asyncio.sleep(TICK_SECONDS)
