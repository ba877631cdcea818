"""`HOST:PORT` as both sides' configs and command lines write it."""

from __future__ import annotations

from logwire.errors import WireError


def split_hostport(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (every interface, as in uWSGI) or `[V6]:PORT`; a WireError
    says what is wrong."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise WireError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - ':PORT' means every interface
    return host, int(port_text)
