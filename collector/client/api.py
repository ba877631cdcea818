"""A small client for the collector's HTTP API, shared by `tail` and `alarms`.

aiohttp's exceptions stop here: callers see ApiError, with `connected` telling whether the
collector answered at all (so `tail -f` knows to retry rather than give up).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from collector.errors import ApiError

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiUnavailable(ApiError):
    """The collector did not answer (refused, reset, timed out)."""


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """--url / $COLLECTOR_URL / default, and --token / $COLLECTOR_TOKEN."""
    return ((url or os.environ.get("COLLECTOR_URL") or DEFAULT_URL).rstrip("/"),
            token or os.environ.get("COLLECTOR_TOKEN") or None)


class ApiClient:
    """GET JSON and NDJSON streams from the collector."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _require(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use ApiClient in 'async with'")
        return self._session

    async def request_json(self, method: str, path: str,
                           params: Mapping[str, str] | None = None,
                           body: Any = None) -> Any:
        """One request answered with JSON; non-2xx answers become ApiError."""
        session = self._require()
        try:
            async with session.request(
                    method, self._url + path, params=params, json=body,
                    timeout=aiohttp.ClientTimeout(total=self._timeout)) as response:
                await _check(response)
                return await response.json()
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise ApiUnavailable(f"cannot reach the collector at {self._url}: {exc}") from None
        except aiohttp.ContentTypeError as exc:
            raise ApiError(f"unexpected answer from {self._url}: {exc.message}") from None

    async def stream(self, path: str, params: Mapping[str, str],
                     idle_timeout: float = 35.0) -> AsyncIterator[dict[str, Any]]:
        """Objects from an NDJSON stream; blank heartbeat lines keep it alive.

        Ends when the server closes the stream; raises ApiUnavailable when the connection
        breaks or nothing, not even a heartbeat, arrives for `idle_timeout` seconds.
        """
        session = self._require()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=idle_timeout)
        try:
            async with session.get(self._url + path, params=params,
                                   timeout=timeout) as response:
                await _check(response)
                async for raw in response.content:
                    line = raw.strip()
                    if line:
                        yield json.loads(line)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                TimeoutError) as exc:
            raise ApiUnavailable(f"lost the collector at {self._url}: {exc}") from None


async def _check(response: aiohttp.ClientResponse) -> None:
    if response.status < 300:
        return
    try:
        detail = (await response.json()).get("error", "")
    except (aiohttp.ContentTypeError, json.JSONDecodeError, AttributeError):
        detail = (await response.text())[:200]
    raise ApiError(f"collector answered {response.status}: {detail}")
