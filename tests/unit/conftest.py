"""Fixtures of the unit tier: an HTTP receiver on loopback and a client session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.unit.alarm_support import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A running HTTP receiver."""
    made = Receiver()
    await made.start()
    yield made
    await made.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """The HTTP client session notifiers share."""
    async with aiohttp.ClientSession() as made:
        yield made
