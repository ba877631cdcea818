"""The typed configuration the server runs on, built once at the CLI edge."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from alarms.spec import AppRules
from collector.config.drain import DrainConfig
from collector.config.ini import Entry
from collector.errors import Location

Format = Literal["crypto", "socket", "native", "syslog"]
# Where a syslog message's source comes from (the listener's `source-from`).
SourceFrom = Literal["hostname", "procid"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK_NETWORKS: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True)
class CryptoSecret:
    """One logcrypto secret a listener accepts, with the settings uWSGI was given."""

    secret: str
    algo: str
    iv: str | None
    app: str | None
    location: Location


@dataclass(frozen=True)
class ListenerConfig:
    """One UDP listener and the single wire format it decodes."""

    name: str
    host: str
    port: int
    format: Format
    app: str
    source: str
    secrets: tuple[CryptoSecret, ...] = ()
    keys: tuple[str, ...] = ()
    allow: tuple[Network, ...] = LOOPBACK_NETWORKS
    max_skew: float = 300.0
    max_datagram: int = 65507
    rcvbuf: int = 32 << 20
    sender_rate: float = 0.0
    replay_window: int = 65536
    # Native only: bounds on what senders make the listener hold (docs/PROTOCOL.md).
    max_streams: int = 4096
    max_pending: int = 65536
    max_stream_pending: int = 4096
    # Receiver processes sharing the port (SO_REUSEPORT); 1 receives in the main process.
    receivers: int = 1
    location: Location | None = None
    # Stream listeners (format = syslog: `tcp =`, `tls =`): one ListenerConfig per
    # transport of a section, named NAME/tcp, NAME/tls (UDP keeps NAME).
    transport: str = "udp"
    source_from: SourceFrom = "hostname"
    max_frame: int = 65536
    max_connections: int = 1024
    idle_timeout: float = 600.0
    frame_timeout: float = 30.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None


@dataclass(frozen=True)
class HttpConfig:
    """The API's address and its bearer token (None: loopback only)."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None


@dataclass(frozen=True)
class StoreConfig:
    """Where and how long logs are kept."""

    data_dir: Path = Path("./data")
    retention: float = 7 * 86400.0
    retention_size: int = 0
    partition: float = 3600.0
    max_queue: int = 1_000_000
    batch_max: int = 20_000


@dataclass(frozen=True)
class ClusterConfig:
    """The `[cluster]` section: the NATS servers, this node's name, replicas, spool."""

    nats: tuple[str, ...]
    node: str
    replicas: int = 3
    spool_size: int = 1 << 30
    # Seconds between heartbeats in the `nodes` bucket; a heartbeat lives 3 times as long.
    heartbeat: float = 5.0
    creds: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    location: Location | None = None


@dataclass(frozen=True)
class AppSection:
    """An `[app:NAME]` block as read, before `alarms.config.parse_app` types its lines."""

    name: str
    entries: tuple[Entry, ...]
    location: Location


@dataclass(frozen=True)
class Config:
    """Everything `collector serve` needs."""

    store: StoreConfig = field(default_factory=StoreConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    listeners: tuple[ListenerConfig, ...] = ()
    apps: tuple[AppRules, ...] = ()
    log_level: str = "info"
    log_format: Literal["console", "json"] = "console"
    source: str = "<embedded default>"
    notices: tuple[str, ...] = ()
    cluster: ClusterConfig | None = None
    # Heroku HTTPS drains: `[listener:NAME]` with `format = logplex` (collector/config/drain.py).
    drains: tuple[DrainConfig, ...] = ()

    def app(self, name: str) -> AppRules | None:
        """The `[app:NAME]` section's alarm rules, if one was given."""
        return next((a for a in self.apps if a.app == name), None)
