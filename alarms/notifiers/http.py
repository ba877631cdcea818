"""One HTTP delivery, with aiohttp's errors mapped to NotifierError.

2xx is delivered. 408, 425, 429 and 5xx are worth retrying; any other 4xx means the
receiver will not take this request however often it is sent, so it is permanent.

A 3xx is never taken for a delivery. 301, 302, 307 and 308 are followed, at most
`MAX_REDIRECTS` hops within the notifier's one timeout, re-sending the same method, body
and headers (so a webhook's signature, which covers id, timestamp and body, still holds);
unlike a browser, a POST is never turned into a GET. A hop is followed only to the same
host, keeping the scheme and port, or from http to https on that host (the common "we
moved to TLS" redirect): the request carries credentials (basic auth, the signature), so
they are not handed to another host, nor sent in the clear after https. Any other 3xx,
a refused hop, a missing Location or too many hops is a permanent failure whose error
says which, so the dead letter tells the operator to put the final URL in the alarm.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from alarms.errors import NotifierError

_RETRYABLE = frozenset({408, 425, 429})
FOLLOWED = frozenset({301, 302, 307, 308})
MAX_REDIRECTS = 5


def shown(url: URL) -> str:
    """The URL for an error or outcome: without user info, query or fragment, which may
    hold a token."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def redirect_target(current: URL, status: int, location: str | None) -> URL:
    """Where a 3xx answer to `current` sends the request; NotifierError (permanent) when
    it is not to be followed (see the module docstring)."""
    if status not in FOLLOWED:
        raise NotifierError(
            f"HTTP {status} from {shown(current)}: only redirects 301, 302, 307 and 308 "
            "are followed; set the alarm's URL to the final one", permanent=True)
    if not location:
        raise NotifierError(f"HTTP {status} from {shown(current)} without a Location",
                            permanent=True)
    try:
        target = current.join(URL(location))
    except ValueError:
        raise NotifierError(f"HTTP {status} from {shown(current)}: bad Location "
                            f"{location[:200]!r}", permanent=True) from None
    same_host = (target.host or "").lower() == (current.host or "").lower()
    same_origin = same_host and target.scheme == current.scheme and \
        target.port == current.port
    upgrade = same_host and current.scheme == "http" and target.scheme == "https"
    if not (same_origin or upgrade):
        raise NotifierError(
            f"HTTP {status} redirect from {shown(current)} to {shown(target)} refused: "
            "redirects are followed only to the same host and port, or from http to https "
            "on the same host; set the alarm's URL to the final one", permanent=True)
    return target


async def post(session: aiohttp.ClientSession, url: str, body: bytes, *,
               headers: dict[str, str], seconds: float, connect_timeout: float | None = None,
               method: str = "POST", verify: bool = True) -> str:
    """Send the request, following redirects as the module docstring says; return
    "HTTP <status>" (with the final URL when redirected) or raise NotifierError."""
    target = URL(url)
    deadline = asyncio.get_running_loop().time() + seconds
    for hops in range(MAX_REDIRECTS + 1):
        left = max(0.001, deadline - asyncio.get_running_loop().time())
        try:
            async with session.request(
                    method, target, data=body, headers=headers, ssl=verify,
                    timeout=aiohttp.ClientTimeout(total=left, sock_connect=connect_timeout),
                    allow_redirects=False) as response:
                await response.read()
                status = response.status
                location = response.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotifierError(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
        if status < 300:
            return f"HTTP {status}" + (f" from {shown(target)} after {hops} redirect(s)"
                                       if hops else "")
        if status >= 400:
            raise NotifierError(f"HTTP {status}",
                                permanent=status < 500 and status not in _RETRYABLE)
        target = redirect_target(target, status, location)
    raise NotifierError(f"more than {MAX_REDIRECTS} redirects, the last to {shown(target)}",
                        permanent=True)
