"""Turning datagram payloads into text lines and reading the `APP/SOURCE` convention."""

from __future__ import annotations

import re

# APP/SOURCE as the shipper writes it: the app a name, the source a dyno or process name
# (`web.1`, `worker.3`, `run.8812`, `host-a@web.1`).
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_SOURCE = r"[A-Za-z0-9_.@\-]+"
CRYPTO_PREFIX = re.compile(rf"({_NAME})/({_SOURCE}) ")
SOCKET_PREFIX = re.compile(rf"({_NAME})/({_SOURCE}):[ ]?")
_SOCKET_PREFIX_BYTES = re.compile(SOCKET_PREFIX.pattern.encode())


def split_socket_prefix(data: bytes) -> tuple[bytes | None, bytes | None, bytes]:
    """App, source and the rest of a logsocket datagram (`APP/SOURCE:` convention); the
    names are None where the datagram has no such prefix."""
    match = _SOCKET_PREFIX_BYTES.match(data)
    if match is None:
        return None, None, data
    return match.group(1), match.group(2), data[match.end():]


def split_lines(payload: bytes) -> tuple[list[str], int]:
    """Split a payload into non-empty lines, keeping bytes that are not UTF-8 as escapes.

    Returns the lines and how many of them needed escaping. uWSGI may hand a logger several
    lines in one write (a backtrace is one), so a datagram is not always one line.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return _split_escaping(payload)
    # The common case, one line with its newline, without building a list of parts.
    if text[-1:] == "\n":
        text = text[:-1]
    if "\n" not in text:
        if text[-1:] == "\r":
            text = text.rstrip("\r")
        return ([text] if text else []), 0
    return [line for part in text.split("\n") if (line := part.rstrip("\r"))], 0


def _split_escaping(payload: bytes) -> tuple[list[str], int]:
    return decode_lines([part.rstrip(b"\r") for part in payload.split(b"\n")])


def decode_lines(raws: list[bytes]) -> tuple[list[str], int]:
    """Lines that arrive already split (the native format): UTF-8 where they are, escaped
    where not (counted), NUL kept visible as `\\x00`, empty ones skipped."""
    lines: list[str] = []
    escaped = 0
    for raw in raws:
        if not raw:
            continue
        clean = raw.replace(b"\0", b"\\x00") if b"\0" in raw else raw
        try:
            lines.append(clean.decode("utf-8"))
        except UnicodeDecodeError:
            lines.append(clean.decode("utf-8", "backslashreplace"))
            escaped += 1
    return lines, escaped
