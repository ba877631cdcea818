"""`application/logplex-1` bodies, as Heroku's HTTPS log drains POST them.

The body is a run of RFC 6587 octet-counted frames, `LEN SP MESSAGE`, each MESSAGE an
RFC 5424 header without the STRUCTURED-DATA field (Logplex writes none):

    83 <40>1 2012-11-30T06:45:29+00:00 host app web.3 - State changed from starting to up

that is `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID MSG`. Heroku puts `app` (the
app's own output) or `heroku` (the platform) in APP-NAME and the dyno (`web.1`), `router`
or an add-on's name in PROCID.

Sans-I/O: `parse_body` takes bytes and returns frames or the error that refuses the whole
body; it never raises. A frame whose header does not have that shape is kept, whole, as
its message, so that nothing Logplex sent is lost for its form.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# A frame's length prefix: Logplex frames are at most 10 KB; the bound keeps a digit
# run from costing more than it could carry.
MAX_LENGTH_DIGITS = 9


@dataclass(frozen=True, slots=True)
class Frame:
    """One syslog message of a drain's POST.

    `procid` is None (and `message` the whole frame) for a frame whose header could not
    be read; `timestamp` is None for the nil timestamp `-` or one that does not parse.
    """

    message: str
    priority: int | None = None
    timestamp: float | None = None
    hostname: str | None = None
    appname: str | None = None
    procid: str | None = None
    msgid: str | None = None


@dataclass(frozen=True, slots=True)
class BodyError:
    """Why a body was refused as a whole: `reason` is a metric label, `detail` for logs."""

    reason: str
    detail: str


def parse_body(body: bytes) -> list[Frame] | BodyError:
    """The frames of a logplex-1 body, in order; or why it is refused.

    A body is refused when its framing is broken (a length that is not digits, a frame
    that runs past the end: a truncated body): the frames after the break cannot be found,
    and taking the ones before it would have Logplex's retry store them twice.
    """
    frames: list[Frame] = []
    at, end = 0, len(body)
    while at < end:
        # Logplex separates frames by nothing; some senders add a newline: skip it.
        if body[at] in b"\r\n":
            at += 1
            continue
        space = body.find(b" ", at, at + MAX_LENGTH_DIGITS + 1)
        digits = body[at:space] if space > at else b""
        if not digits.isdigit() or not digits.isascii():
            return BodyError("bad_length", f"no octet count at byte {at}")
        length = int(digits)
        start = space + 1
        if length == 0:
            return BodyError("bad_length", f"empty frame at byte {at}")
        if start + length > end:
            return BodyError("truncated", f"frame at byte {at} needs {length} bytes, "
                                          f"{end - start} remain")
        frames.append(parse_frame(body[start:start + length]))
        at = start + length
    return frames


def parse_frame(data: bytes) -> Frame:
    """One frame's message: its header fields, or the whole text when they do not parse."""
    text = data.decode("utf-8", "replace").rstrip("\n")
    if not text.startswith("<"):
        return Frame(text)
    close = text.find(">", 1, 5)
    if close < 0 or not text[1:close].isdigit():
        return Frame(text)
    priority = int(text[1:close])
    # VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID MSG: six fields before the message.
    parts = text[close + 1:].split(" ", 6)
    if len(parts) < 6 or parts[0] != "1" or priority > 191 or not all(parts[1:6]):
        return Frame(text)
    message = parts[6] if len(parts) == 7 else ""
    return Frame(message, priority, parse_timestamp(parts[1]), _nil(parts[2]),
                 _nil(parts[3]), _nil(parts[4]), _nil(parts[5]))


def parse_timestamp(text: str) -> float | None:
    """An RFC 3339 timestamp (`2012-11-30T06:45:29.123+00:00`, `...Z`) as Unix seconds;
    None for `-` or a timestamp without its offset (its instant is unknown)."""
    if text == "-" or len(text) < 20 or text[10] != "T":
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return stamp.timestamp()


def _nil(value: str) -> str | None:
    return None if value == "-" else value
