"""Stream listeners (TCP, TLS, ...) by transport: the one registry the server opens them
from. Another stream-like listener is one more module and one more line in `STARTERS`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Protocol

from collector.config.model import ListenerConfig
from collector.decode.result import Decoder
from collector.ingest import Ingest
from collector.listen.stats import ListenerStats
from collector.listen.syslog_stream import start_syslog_stream


class StreamListener(Protocol):
    """What the server and /metrics need of a running stream listener."""

    config: ListenerConfig
    stats: ListenerStats
    rcvbuf: int

    def reconfigure(self, config: ListenerConfig, decoder: Decoder) -> None:
        """Take reloaded settings for connections from now on (reloads reopen a changed
        stream listener instead; see collector/server/reload.py)."""
        ...

    def close(self) -> bool:
        """Stop accepting, drop the connections; False if it was not open."""
        ...

    def evictions(self) -> Counter[str]:
        """State given up to stay within a bound, by reason."""
        ...

    def held(self) -> dict[str, int]:
        """What it holds now, by kind (`connections`)."""
        ...

    def inode(self) -> int | None:
        """None: a stream listener has no UDP socket for /proc/net/udp."""
        ...


StreamStarter = Callable[[ListenerConfig, Ingest], Awaitable[StreamListener]]

STARTERS: dict[str, StreamStarter] = {
    "tcp": start_syslog_stream,
    "tls": start_syslog_stream,
}


async def start_stream(config: ListenerConfig, ingest: Ingest) -> StreamListener:
    """Open the stream listener for `config.transport`."""
    return await STARTERS[config.transport](config, ingest)
