"""Heroku router lines parsed into fields (the `router` source of a drain).

    at=info method=GET path="/" host=shop.herokuapp.com request_id=5d3c... fwd="1.2.3.4"
    dyno=web.1 connect=0ms service=12ms status=200 bytes=1234 protocol=https
    at=error code=H12 desc="Request timeout" method=GET path="/slow" ... status=503

`key=value` pairs, a value in double quotes when it may hold spaces; a field the router
could not fill is empty (`dyno= connect= service=` on an H10). Pure and total: any text
gives fields or None, never an exception.
"""

from __future__ import annotations

from typing import NamedTuple

# Keys kept; others (sock=, tls_version=, ...) are skipped, so a new router field
# changes nothing here.
_KEYS = frozenset({"at", "code", "desc", "method", "path", "host", "request_id", "fwd",
                   "dyno", "connect", "service", "status", "bytes", "protocol"})


class RouterFields(NamedTuple):
    """What a router line says about one request; None where the router left it empty."""

    at: str
    method: str | None
    path: str | None
    status: int | None
    service: float | None  # ms
    connect: float | None  # ms
    size: int | None  # bytes
    dyno: str | None
    code: str | None  # H12, ... on `at=error` lines
    desc: str | None
    request_id: str | None
    host: str | None
    fwd: str | None
    protocol: str | None


def pairs(line: str) -> dict[str, str]:
    """The line's `key=value` pairs (quotes taken off); a word without `=` is skipped."""
    found: dict[str, str] = {}
    at, end = 0, len(line)
    while at < end:
        while at < end and line[at] == " ":
            at += 1
        equals = line.find("=", at)
        space = line.find(" ", at)
        if equals < 0:
            break
        if 0 <= space < equals:
            at = space + 1
            continue
        key = line[at:equals]
        at = equals + 1
        if at < end and line[at] == '"':
            close = line.find('"', at + 1)
            if close < 0:
                close = end
            value, at = line[at + 1:close], close + 1
        else:
            stop = line.find(" ", at)
            stop = end if stop < 0 else stop
            value, at = line[at:stop], stop
        if key in _KEYS and key not in found:
            found[key] = value
    return found


def parse_router_line(line: str) -> RouterFields | None:
    """The fields of a router line, or None for a line that is not one (no `at=` first,
    or neither method nor status)."""
    if not line.startswith("at="):
        return None
    found = pairs(line)
    method = found.get("method") or None
    status = _int(found.get("status"))
    if method is None and status is None:
        return None
    return RouterFields(
        at=found["at"], method=method, path=found.get("path") or None, status=status,
        service=_millis(found.get("service")), connect=_millis(found.get("connect")),
        size=_int(found.get("bytes")), dyno=found.get("dyno") or None,
        code=found.get("code") or None, desc=found.get("desc") or None,
        request_id=found.get("request_id") or None, host=found.get("host") or None,
        fwd=found.get("fwd") or None, protocol=found.get("protocol") or None)


# What a router line puts in a record's request columns: method, path, status, msecs
# (the router's `service`) and size (`bytes`).
RequestColumns = tuple[str | None, str | None, int | None, float | None, int | None]


def router_columns(line: str) -> RequestColumns | None:
    """A router line's request columns, as a uWSGI request line fills them; None for a
    line that is not a router line."""
    fields = parse_router_line(line)
    if fields is None:
        return None
    return fields.method, fields.path, fields.status, fields.service, fields.size


def router_extras(line: str) -> dict[str, str | float | None] | None:
    """What the API adds to a router line's JSON beyond the record's columns."""
    fields = parse_router_line(line)
    if fields is None:
        return None
    return {"dyno": fields.dyno, "code": fields.code, "connect": fields.connect,
            "request_id": fields.request_id}


def _int(text: str | None) -> int | None:
    if not text or not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def _millis(text: str | None) -> float | None:
    if not text:
        return None
    number = text.removesuffix("ms")
    if not number.isascii() or not number.isdigit() or len(number) > 15:
        return None
    return float(number)
