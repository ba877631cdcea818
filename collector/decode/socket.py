"""uWSGI logsocket (`logger = socket:HOST:PORT[,PREFIX]`): the prefix, then the message.

Plain text, so the listener admits only senders from its allow-list of networks. The
shipper's convention is the prefix `APP/SOURCE:`; a datagram without it belongs to the
listener's default app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from collector.config.model import Network
from collector.decode.result import Decoded, Dropped, Lines
from collector.speedups import split_lines
from logwire.prefix import split_socket_prefix


class AllowList:
    """Whether a sender address lies in one of the allowed networks, cached per address."""

    def __init__(self, networks: Sequence[Network], max_cached: int = 65536) -> None:
        self._networks = tuple(networks)
        self._cache: dict[str, bool] = {}
        self._max_cached = max_cached

    def __contains__(self, host: str) -> bool:
        known = self._cache.get(host)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            allowed = False
        else:
            allowed = any(address in network for network in self._networks)
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        self._cache[host] = allowed
        return allowed


def parse_socket_payload(data: bytes) -> Decoded:
    """Read the optional `APP/SOURCE:` prefix and split the rest into lines."""
    raw_app, raw_source, body = split_socket_prefix(data)
    app = raw_app.decode() if raw_app is not None else None
    source = raw_source.decode() if raw_source is not None else None
    if b"\0" in body:
        # SQLite and terminals both cut text at NUL; keep the byte visible instead.
        body = body.replace(b"\0", b"\\x00")
    lines, escaped = split_lines(body)
    if not lines:
        return Dropped("empty")
    return Lines(lines, app, source, None, escaped)


class SocketDecoder:
    """Decodes logsocket datagrams from allowed senders."""

    format = "socket"

    def __init__(self, allow: Sequence[Network]) -> None:
        self._allow = AllowList(allow)

    def decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """Check the sender, then parse the payload."""
        if peer not in self._allow:
            return Dropped("not_allowed")
        return parse_socket_payload(data)
