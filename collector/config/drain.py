"""`[listener:NAME]` with `format = logplex`: a Heroku HTTPS log drain's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collector.config.ini import Entry, Section
from collector.config.units import (
    is_loopback,
    parse_bool,
    parse_hostport,
    parse_int,
    parse_size,
)
from collector.errors import ConfigError, Location

DRAIN_KEYS = frozenset({"http", "format", "tls-cert", "tls-key", "drain", "behind-proxy",
                        "max-body", "max-connections", "dedup-frames", "source"})
MIN_TOKEN = 16
DRAIN_PATH = "/drain"


@dataclass(frozen=True)
class DrainCredential:
    """`drain = APP:TOKEN`: the app a drain's lines are stored under, and its secret."""

    app: str
    token: str
    location: Location

    def __repr__(self) -> str:
        # The token never reaches a log or a traceback through a repr.
        return f"DrainCredential(app={self.app!r}, token='***', location={self.location!r})"


@dataclass(frozen=True)
class DrainConfig:
    """One HTTPS (or, on loopback or behind a proxy, HTTP) drain listener."""

    name: str
    host: str
    port: int
    drains: tuple[DrainCredential, ...]
    tls_cert: Path | None = None
    tls_key: Path | None = None
    behind_proxy: bool = False
    # Logplex posts batches of at most a few hundred KB; more is refused with 413.
    max_body: int = 1 << 20
    max_connections: int = 256
    # Frame ids remembered to drop Logplex's re-sent POSTs (oldest forgotten first).
    dedup_frames: int = 65536
    # The source of a frame without a PROCID.
    source: str = "heroku"
    location: Location | None = None

    @property
    def tls(self) -> bool:
        """Whether the listener speaks HTTPS."""
        return self.tls_cert is not None


def _single(section: Section, key: str) -> Entry | None:
    found = [e for e in section.entries if e.key == key]
    if len(found) > 1:
        raise ConfigError("given twice; give it once", found[1].location)
    return found[0] if found else None


def _credential(entry: Entry) -> DrainCredential:
    app, sep, token = entry.value.partition(":")
    app = app.strip()
    if not sep or not app or not token:
        raise ConfigError("expected drain = APP:TOKEN, e.g. drain = shop:$(SHOP_DRAIN_TOKEN)",
                          entry.location)
    if len(token) < MIN_TOKEN:
        raise ConfigError(f"the drain token must be at least {MIN_TOKEN} characters "
                          "(make one with `openssl rand -hex 24`)", entry.location)
    if any(c.isspace() for c in token) or "@" in token or "/" in token:
        raise ConfigError("the drain token must not hold spaces, '@' or '/' (it goes in a "
                          "URL)", entry.location)
    return DrainCredential(app, token, entry.location)


def _bool(entry: Entry | None) -> bool:
    return entry is not None and parse_bool(entry.value, entry.location)


def build_drain(section: Section, name: str) -> DrainConfig:
    """Check a `format = logplex` listener section; errors name file, line and key."""
    for entry in section.entries:
        if entry.key not in DRAIN_KEYS:
            raise ConfigError(f"unknown key in [{section.name}] (format = logplex); known "
                              f"keys: {', '.join(sorted(DRAIN_KEYS))}", entry.location)
    http = _single(section, "http")
    if http is None:
        raise ConfigError(f"[{section.name}] has format = logplex but no http = HOST:PORT",
                          section.location)
    host, port = parse_hostport(http.value, http.location)
    entries = [e for e in section.entries if e.key == "drain"]
    if not entries:
        raise ConfigError(f"[{section.name}] needs at least one drain = APP:TOKEN",
                          section.location)
    drains = tuple(_credential(e) for e in entries)
    seen: set[str] = set()
    for entry, drain in zip(entries, drains, strict=True):
        if drain.app in seen:
            raise ConfigError(f"drain for app {drain.app!r} given twice", entry.location)
        seen.add(drain.app)
    cert, key = _single(section, "tls-cert"), _single(section, "tls-key")
    if (cert is None) != (key is None):
        given = cert or key
        assert given is not None
        raise ConfigError("give both tls-cert and tls-key", given.location)
    proxy_entry = _single(section, "behind-proxy")
    behind_proxy = _bool(proxy_entry)
    if cert is None and not behind_proxy and not is_loopback(host):
        raise ConfigError(
            f"http = {host}:{port} is not a loopback address and no tls-cert/tls-key is "
            "set: drain tokens would cross the network in clear; set tls-cert and tls-key, "
            "or behind-proxy = yes when a TLS proxy in front forwards to it", http.location)

    def number(key: str, default: int, minimum: int, size: bool = False) -> int:
        entry = _single(section, key)
        if entry is None:
            return default
        value = (parse_size(entry.value, entry.location) if size
                 else parse_int(entry.value, entry.location, minimum=minimum))
        if value < minimum:
            raise ConfigError(f"must be at least {minimum}", entry.location)
        return int(value)

    source = _single(section, "source")
    return DrainConfig(
        name=name, host=host, port=port, drains=drains,
        tls_cert=Path(cert.value) if cert is not None else None,
        tls_key=Path(key.value) if key is not None else None,
        behind_proxy=behind_proxy,
        max_body=number("max-body", 1 << 20, 1024, size=True),
        max_connections=number("max-connections", 256, 1),
        dedup_frames=number("dedup-frames", 65536, 16),
        source=source.value if source is not None and source.value else "heroku",
        location=section.location)
