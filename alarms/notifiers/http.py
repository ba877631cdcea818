"""One HTTP delivery attempt, with aiohttp's errors mapped to NotifierError.

2xx and 3xx are delivered. 408, 429 and 5xx are worth retrying; any other 4xx means the
receiver will not take this request however often it is sent, so it is permanent.
"""

from __future__ import annotations

import aiohttp

from collector.errors import NotifierError

_RETRYABLE = frozenset({408, 425, 429})


async def post(session: aiohttp.ClientSession, url: str, body: bytes, *,
               headers: dict[str, str], seconds: float, connect_timeout: float | None = None,
               method: str = "POST", verify: bool = True) -> str:
    """Send one request; return "HTTP <status>" or raise NotifierError."""
    try:
        async with session.request(
                method, url, data=body, headers=headers, ssl=verify,
                timeout=aiohttp.ClientTimeout(total=seconds, sock_connect=connect_timeout),
                allow_redirects=False) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NotifierError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
    if status < 400:
        return f"HTTP {status}"
    raise NotifierError(f"HTTP {status}",
                        permanent=status < 500 and status not in _RETRYABLE)
