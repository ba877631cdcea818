"""Syslog messages as lines: a datagram (UDP) or a frame (TCP, TLS) to `Lines`.

The message's APP-NAME (RFC 3164: its TAG) becomes the app, its HOSTNAME or PROCID (the
listener's `source-from`) the source, its timestamp `emitted_at`; a message without them
takes the listener's `app =` and `source =`. The stored line is MSG with the
STRUCTURED-DATA, when given, verbatim in front (`SyslogMessage.line`); a MSG of several
lines (a traceback) makes one record per line.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.config.model import Network, SourceFrom
from collector.decode.result import Decoded, Dropped, Lines
from collector.decode.socket import AllowList
from collector.decode.syslog import SyslogError, parse_syslog


def syslog_lines(data: bytes, now: float, source_from: SourceFrom = "hostname") -> Decoded:
    """One message's lines and origin, or why it was dropped."""
    parsed = parse_syslog(data, now)
    if isinstance(parsed, SyslogError):
        return Dropped(parsed.reason)
    lines = [line.rstrip("\r") for line in parsed.line().split("\n")]
    lines = [line for line in lines if line]
    if not lines:
        return Dropped("empty")
    source = parsed.hostname if source_from == "hostname" else parsed.procid
    return Lines(lines, parsed.app_name, source, parsed.timestamp)


class SyslogDecoder:
    """Decodes syslog datagrams (one message each) from allowed senders."""

    format = "syslog"

    def __init__(self, allow: Sequence[Network], source_from: SourceFrom = "hostname") -> None:
        self._allow = AllowList(allow)
        self.source_from: SourceFrom = source_from

    def allowed(self, peer: str) -> bool:
        """Whether `peer` may send (a stream listener asks once per connection)."""
        return peer in self._allow

    def decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """Check the sender, then parse the message."""
        if peer not in self._allow:
            return Dropped("not_allowed")
        return syslog_lines(data, now, self.source_from)
