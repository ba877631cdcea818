"""One syslog message, RFC 5424 or RFC 3164, told apart per message: a pure parser.

`parse_syslog` returns a `SyslogMessage` or a `SyslogError` (never raises), so a
listener's hot path has no exception handling. RFC 5424 is recognised by the version
digit after PRI (`<34>1 ...`); anything else is read as RFC 3164, leniently, as relays
do (RFC 3164 section 4.3): a missing PRI is taken as 13 (user.notice), a missing or odd
timestamp leaves `timestamp` None and the rest is the message.

uWSGI's `logger = rsyslog:HOST:PORT,PREFIX` sends `<29>Nov 30 21:00:00 PREFIX: message`
(plugins/rsyslog): no HOSTNAME, PREFIX as the TAG; without PREFIX it sends
`HOSTNAME uwsgi:`. A first word ending in `:` (or holding `[`) is read as the TAG, so
both land with app = the prefix (or `uwsgi`) and the hostname where one was given.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from datetime import datetime

BOM = b"\xef\xbb\xbf"
NILVALUE = "-"
MAX_PRI = 191

_MONTHS = {name: index for index, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    start=1)}
_RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_BSD_TIME = re.compile(rb"([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2})")
_TAG = re.compile(rb"([^\s\[\]:]{1,48})(?:\[([^\]\s]{0,128})\])?:")


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    """A parsed message: the header's fields (None for a NILVALUE or a field RFC 3164
    lacks), STRUCTURED-DATA verbatim (None if `-`) and MSG, BOM removed."""

    facility: int
    severity: int
    version: int  # 1 for RFC 5424, 0 for RFC 3164
    timestamp: float | None
    hostname: str | None
    app_name: str | None
    procid: str | None
    msgid: str | None
    structured_data: str | None
    msg: str

    def line(self) -> str:
        """The text stored for the message: STRUCTURED-DATA, when given, verbatim in front
        of MSG (so `[origin ip="10.0.0.1"] started` is searchable as one line)."""
        if self.structured_data is None:
            return self.msg
        return f"{self.structured_data} {self.msg}" if self.msg else self.structured_data


@dataclass(frozen=True, slots=True)
class SyslogError:
    """Why a message was refused: `reason` is the counter's label, `detail` for logs."""

    reason: str
    detail: str


def parse_syslog(data: bytes, now: float) -> SyslogMessage | SyslogError:
    """Parse one message; `now` (seconds since the epoch) gives an RFC 3164 timestamp,
    which has no year, its year."""
    if not data:
        return SyslogError("empty", "no bytes")
    pri, rest = _pri(data)
    if pri is None:
        return SyslogError("bad_pri", f"bad PRI in {data[:8]!r}")
    if pri < 0:
        return _rfc3164(13, data, now)
    if rest[:2] == b"1 ":
        return _rfc5424(pri, rest[2:])
    return _rfc3164(pri, rest, now)


def _pri(data: bytes) -> tuple[int | None, bytes]:
    """(PRI, the rest); PRI -1 when the message has none, None when it is malformed."""
    if data[:1] != b"<":
        return -1, data
    end = data.find(b">", 1, 5)
    digits = data[1:end]
    if end < 0 or not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
        return None, data
    value = int(digits)
    if value > MAX_PRI:
        return None, data
    return value, data[end + 1:]


def _text(raw: bytes) -> str:
    # Bytes that are not UTF-8 stay visible as U+FFFD rather than refusing the message.
    return raw.decode("utf-8", "replace").replace("\0", "\\x00")


def _field(raw: bytes) -> str | None:
    return None if raw == b"-" else _text(raw)


def _rfc5424(pri: int, rest: bytes) -> SyslogMessage | SyslogError:
    parts = rest.split(b" ", 5)
    if len(parts) < 6:
        return SyslogError("bad_header", "RFC 5424 header has fewer than 7 fields")
    stamp, host, app, procid, msgid, tail = parts
    if stamp == b"-":
        timestamp = None
    else:
        parsed = _rfc3339(stamp)
        if parsed is None:
            return SyslogError("bad_timestamp", f"bad RFC 5424 timestamp {stamp[:40]!r}")
        timestamp = parsed
    if tail[:1] == b"-":
        sd, msg = None, tail[1:]
    elif tail[:1] == b"[":
        end = _sd_end(tail)
        if end < 0:
            return SyslogError("bad_structured_data", "unterminated STRUCTURED-DATA")
        sd, msg = _text(tail[:end]), tail[end:]
    else:
        return SyslogError("bad_structured_data", "STRUCTURED-DATA is neither - nor [...]")
    if msg and msg[:1] != b" ":
        return SyslogError("bad_structured_data", "no space after STRUCTURED-DATA")
    msg = msg[1:]
    if msg.startswith(BOM):
        msg = msg[len(BOM):]
    return SyslogMessage(pri >> 3, pri & 7, 1, timestamp, _field(host), _field(app),
                         _field(procid), _field(msgid), sd, _text(msg).rstrip("\r\n"))


def _sd_end(tail: bytes) -> int:
    """The index just past the last SD-ELEMENT at the start of `tail`, -1 if one is
    unterminated. Inside a quoted PARAM-VALUE, `\\"`, `\\\\` and `\\]` are escapes."""
    index, size = 0, len(tail)
    while index < size and tail[index:index + 1] == b"[":
        index += 1
        quoted = False
        while True:
            if index >= size:
                return -1
            byte = tail[index]
            if quoted:
                if byte == 0x5C:  # backslash: the next byte is taken as is
                    index += 1
                elif byte == 0x22:
                    quoted = False
            elif byte == 0x22:
                quoted = True
            elif byte == 0x5D:  # ]
                index += 1
                break
            index += 1
    return index


def _rfc3339(stamp: bytes) -> float | None:
    match = _RFC3339.fullmatch(stamp)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = float(match.group(7)) if match.group(7) else 0.0
    zone = match.group(8)
    offset = 0 if zone == b"Z" else (
        (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * (1 if zone[:1] == b"+" else -1))
    try:
        moment = calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0))
        datetime(year, month, day, hour, minute, min(second, 59))  # checks the date exists
    except ValueError:
        return None
    return moment - offset + fraction


def _rfc3164(pri: int, rest: bytes, now: float) -> SyslogMessage:
    timestamp: float | None = None
    match = _BSD_TIME.match(rest)
    if match is not None and rest[15:16] in (b" ", b""):
        timestamp = _bsd_time(match, now)
        rest = rest[16:]
    elif (space := rest.find(b" ")) > 0 and (stamp := _rfc3339(rest[:space])) is not None:
        # rsyslog's RSYSLOG_ForwardFormat and many relays send an RFC 3339 stamp here.
        timestamp, rest = stamp, rest[space + 1:]
    hostname: str | None = None
    tag = _TAG.match(rest)
    if timestamp is not None and tag is None:
        host, _, after = rest.partition(b" ")
        if host and after:
            hostname, rest = _text(host), after
            tag = _TAG.match(after)
    app = procid = None
    if tag is not None:
        app = _text(tag.group(1))
        procid = _text(tag.group(2)) if tag.group(2) else None
        rest = rest[tag.end():]
        if rest[:1] == b" ":
            rest = rest[1:]
    return SyslogMessage(pri >> 3, pri & 7, 0, timestamp, hostname, app, procid, None, None,
                         _text(rest).rstrip("\r\n"))


def _bsd_time(match: re.Match[bytes], now: float) -> float | None:
    """`Mmm dd hh:mm:ss` in the collector's local time (as uWSGI's ctime sends it), in
    the year that puts it closest to `now`."""
    month = _MONTHS.get(match.group(1).decode())
    if month is None:
        return None
    day, hour, minute, second = (int(g) for g in match.groups()[1:])
    year = time.localtime(now).tm_year
    best: float | None = None
    for candidate in (year - 1, year, year + 1):
        try:
            datetime(candidate, month, day, hour, minute, second)
        except ValueError:
            continue
        moment = time.mktime((candidate, month, day, hour, minute, second, 0, 0, -1))
        if best is None or abs(moment - now) < abs(best - now):
            best = moment
    return best
