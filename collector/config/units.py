"""Parsers for the value types config keys take; each raises ConfigError at a Location."""

from __future__ import annotations

import ipaddress
import re

from collector.errors import ConfigError, Location
from collector.timespec import duration_seconds
from logwire.address import split_hostport
from logwire.errors import WireError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(value: str, location: Location) -> float:
    """`90`, `500ms`, `30s`, `15m`, `12h`, `7d`, `2w` to seconds (a bare number is seconds)."""
    seconds = duration_seconds(value)
    if seconds is None:
        raise ConfigError(f"expected a duration such as 30s, 15m, 7d; got {value!r}", location)
    return seconds


def parse_size(value: str, location: Location) -> int:
    """`10G`, `512M`, `64KiB`, `1000` (bytes) to bytes; units are powers of 1024."""
    match = _SIZE.match(value.strip())
    if not match:
        raise ConfigError(f"expected a size such as 512M or 10G; got {value!r}", location)
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_int(value: str, location: Location, *, minimum: int = 0) -> int:
    """A whole number no smaller than `minimum`."""
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"expected a whole number, got {value!r}", location) from None
    if number < minimum:
        raise ConfigError(f"must be at least {minimum}, got {number}", location)
    return number


def parse_bool(value: str, location: Location) -> bool:
    """`yes`/`true`/`on`/`1` or `no`/`false`/`off`/`0`, in any case."""
    word = value.strip().lower()
    if word in ("yes", "true", "on", "1"):
        return True
    if word in ("no", "false", "off", "0"):
        return False
    raise ConfigError(f"expected yes or no; got {value!r}", location)


def parse_hostport(value: str, location: Location) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[V6]:PORT`."""
    try:
        return split_hostport(value)
    except WireError as exc:
        raise ConfigError(str(exc), location) from None


def parse_network(value: str, location: Location) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR network or a single address."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ConfigError(f"expected a network such as 10.0.0.0/8, got {value!r}",
                          location) from None


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
