"""Turning datagram payloads into text lines."""

from __future__ import annotations


def split_lines(payload: bytes) -> tuple[list[str], int]:
    """Split a payload into non-empty lines, keeping bytes that are not UTF-8 as escapes.

    Returns the lines and how many of them needed escaping. uWSGI may hand a logger several
    lines in one write (a backtrace is one), so a datagram is not always one line. This is
    the reference implementation: the decoders use collector.speedups.split_lines, the
    compiled one where it was built, with identical results.
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
