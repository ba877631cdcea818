"""Build a `Config` from ini sections: every key checked, every error located."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets as secrets_module
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from alarms.config import parse_app
from alarms.spec import AppRules
from collector.config.drain import DrainConfig, build_drain
from collector.config.ini import Entry, Section, parse_ini
from collector.config.model import (
    LOOPBACK_NETWORKS,
    AppSection,
    ClusterConfig,
    Config,
    CryptoSecret,
    Format,
    HttpConfig,
    ListenerConfig,
    Network,
    StoreConfig,
)
from collector.config.units import (
    is_loopback,
    parse_duration,
    parse_hostport,
    parse_int,
    parse_network,
    parse_size,
)
from collector.errors import ConfigError, Location
from logwire.errors import WireError
from logwire.logcrypto import ALGORITHMS
from logwire.native import parse_key_token

_FORMATS: tuple[Format, ...] = ("crypto", "socket", "native", "syslog")
_SECRET_OPTIONS = ("secret", "algo", "iv", "app")

def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and check the ini file at `path`."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {filename}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {filename} is not UTF-8") from None
    sections = parse_ini(text, filename, os.environ if env is None else env)
    return build_config(sections, filename)


def _single(entries: list[Entry], key: str) -> Entry | None:
    """The one entry for `key`; a key given twice where only one makes sense is an error."""
    found = [e for e in entries if e.key == key]
    if len(found) > 1:
        raise ConfigError(f"given {len(found)} times; give it once", found[1].location)
    return found[0] if found else None


def _check_keys(section: Section, allowed: set[str]) -> None:
    for entry in section.entries:
        if entry.key not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"unknown key in [{section.name}]; known keys: {known}",
                              entry.location)


def _value(entries: list[Entry], key: str, default: Any, parse: Callable[[str, Location], Any]
           ) -> Any:
    entry = _single(entries, key)
    return default if entry is None else parse(entry.value, entry.location)


def _text(value: str, location: Location) -> str:
    if not value:
        raise ConfigError("must not be empty", location)
    return value


_COLLECTOR_KEYS = {
    "data-dir", "http", "api-token", "retention", "retention-size", "partition",
    "max-queue", "batch-max", "log-level", "log-format",
}


def _build_collector(section: Section | None) -> tuple[StoreConfig, HttpConfig, str, str]:
    if section is None:
        return StoreConfig(), HttpConfig(), "info", "console"
    _check_keys(section, _COLLECTOR_KEYS)
    e = section.entries
    store = StoreConfig(
        data_dir=Path(_value(e, "data-dir", "./data", _text)),
        retention=_value(e, "retention", 7 * 86400.0, parse_duration),
        retention_size=_value(e, "retention-size", 0, parse_size),
        partition=_value(e, "partition", 3600.0, parse_duration),
        max_queue=_value(e, "max-queue", 1_000_000, lambda v, loc: parse_int(v, loc, minimum=1)),
        batch_max=_value(e, "batch-max", 20_000, lambda v, loc: parse_int(v, loc, minimum=1)),
    )
    if store.partition < 60:
        raise ConfigError("partition must be at least 60s", _location(e, "partition"))
    host, port = _value(e, "http", ("127.0.0.1", 8080), parse_hostport)
    token_entry = _single(e, "api-token")
    token = token_entry.value if token_entry and token_entry.value else None
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"http = {host}:{port} is not a loopback address and no api-token is set; "
            "set api-token (e.g. api-token = $(COLLECTOR_TOKEN)) or bind to 127.0.0.1",
            _location(e, "http"))
    level = _value(e, "log-level", "info", _choice("debug", "info", "warning", "error"))
    fmt = _value(e, "log-format", "console", _choice("console", "json"))
    return store, HttpConfig(host, port, token), level, fmt


def _choice(*options: str) -> Callable[[str, Location], str]:
    def parse(value: str, location: Location) -> str:
        if value not in options:
            raise ConfigError(f"expected one of {', '.join(options)}; got {value!r}", location)
        return value
    return parse


def _location(entries: list[Entry], key: str) -> Location | None:
    return next((entry.location for entry in entries if entry.key == key), None)


_LISTENER_KEYS = {
    "udp", "format", "algo", "secret", "iv", "key", "app", "source", "allow", "max-skew",
    "max-datagram", "rcvbuf", "sender-rate", "replay-window",
    "max-streams", "max-pending", "max-stream-pending", "receivers",
    *("tcp", "tls", "tls-cert", "tls-key", "tls-client-ca", "source-from", "max-frame",
      "max-connections", "idle-timeout", "frame-timeout"),
}
# Keys of stream transports (format = syslog), checked in _stream_listeners.
_STREAM_TRANSPORTS = ("tcp", "tls")
_STREAM_KEYS = ("tcp", "tls", "tls-cert", "tls-key", "tls-client-ca", "max-connections",
                "idle-timeout", "frame-timeout")
MAX_RECEIVERS = 64
_NATIVE_BOUNDS = ("max-streams", "max-pending", "max-stream-pending")


def _parse_secret(entry: Entry, algo: str, iv: str | None, app: str | None) -> CryptoSecret:
    """`secret = S`, or uWSGI's own kvlist `secret=S,algo=A,iv=I,app=NAME`.

    The kvlist form lets an operator paste the arguments of a `logger = crypto:` line; uWSGI
    splits that list on commas too, so no secret uWSGI can use is lost to the split.
    """
    value = entry.value
    if not value.startswith(tuple(f"{k}=" for k in _SECRET_OPTIONS)):
        if not value:
            raise ConfigError("secret is empty", entry.location)
        return CryptoSecret(value, algo, iv, app, entry.location)
    options: dict[str, str] = {}
    for item in value.split(","):
        name, sep, option = item.partition("=")
        if not sep or name not in (*_SECRET_OPTIONS, "addr", "prefix"):
            raise ConfigError(f"unknown secret option {name!r}; use secret=,algo=,iv=,app=",
                              entry.location)
        options[name] = option
    if not options.get("secret"):
        raise ConfigError("kvlist form needs secret=...", entry.location)
    chosen = options.get("algo", algo)
    _check_algo(chosen, entry.location)
    return CryptoSecret(options["secret"], chosen, options.get("iv", iv),
                        options.get("app", app), entry.location)


def _check_algo(algo: str, location: Location) -> None:
    if algo not in ALGORITHMS:
        raise ConfigError(f"unsupported algo {algo!r}; use one of {', '.join(ALGORITHMS)}",
                          location)


def _build_listeners(section: Section, name: str) -> list[ListenerConfig]:
    """A `[listener:NAME]` section's listeners: UDP (named NAME) and, for format = syslog,
    one per stream transport (NAME/tcp, NAME/tls)."""
    _check_keys(section, _LISTENER_KEYS)
    e = section.entries
    fmt_entry = _single(e, "format")
    if fmt_entry is None:
        raise ConfigError(f"[{section.name}] needs format = crypto|socket|native|syslog",
                          section.location)
    if fmt_entry.value not in _FORMATS:
        raise ConfigError(f"expected crypto, socket, native or syslog; got "
                          f"{fmt_entry.value!r}", fmt_entry.location)
    fmt: Format = fmt_entry.value  # checked against _FORMATS just above
    udp = _single(e, "udp")
    if fmt != "syslog":
        _only_for(fmt, "syslog", [x for x in e if x.key in (*_STREAM_KEYS, "source-from",
                                                              "max-frame")])
        if udp is None:
            raise ConfigError(f"[{section.name}] needs udp = HOST:PORT", section.location)
        return [_build_listener(section, name, fmt, udp)]
    return _syslog_listeners(section, name, udp)


def _syslog_listeners(section: Section, name: str, udp: Entry | None) -> list[ListenerConfig]:
    """format = syslog: any of udp, tcp, tls; tls needs tls-cert and tls-key."""
    e = section.entries
    streams = {kind: entry for kind in _STREAM_TRANSPORTS
               if (entry := _single(e, kind)) is not None}
    if udp is None and not streams:
        raise ConfigError(f"[{section.name}] needs udp =, tcp = or tls = HOST:PORT",
                          section.location)
    tls_keys = [x for x in e if x.key in ("tls-cert", "tls-key", "tls-client-ca")]
    if "tls" not in streams and tls_keys:
        raise ConfigError("only meaningful with tls = HOST:PORT", tls_keys[0].location)
    if "tls" in streams:
        for key in ("tls-cert", "tls-key"):
            if _single(e, key) is None:
                raise ConfigError(f"[{section.name}] has tls = but no {key} =",
                                  streams["tls"].location)
    if not streams:
        stream_keys = [x for x in e if x.key in _STREAM_KEYS]
        if stream_keys:
            raise ConfigError("only meaningful with tcp = or tls = HOST:PORT",
                              stream_keys[0].location)
    base = _build_listener(section, name, "syslog", udp or streams[next(iter(streams))])
    common = replace(
        base,
        source_from=_value(e, "source-from", "hostname", _choice("hostname", "procid")),
        max_frame=_value(e, "max-frame", 65536, _frame_size),
        max_connections=_value(e, "max-connections", 1024, _positive),
        idle_timeout=_value(e, "idle-timeout", 600.0, _seconds),
        frame_timeout=_value(e, "frame-timeout", 30.0, _seconds),
        tls_cert=_value(e, "tls-cert", None, _path),
        tls_key=_value(e, "tls-key", None, _path),
        tls_client_ca=_value(e, "tls-client-ca", None, _path))
    found = [common] if udp is not None else []
    for kind, entry in streams.items():
        host, port = parse_hostport(entry.value, entry.location)
        # TLS is the way in from afar (with tls-client-ca, authenticated): without an
        # allow list it admits any address; plain TCP, like UDP, only loopback.
        allow = common.allow
        if kind == "tls" and not any(x.key == "allow" for x in e):
            allow = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
        found.append(replace(common, name=f"{name}/{kind}", host=host, port=port,
                             transport=kind, allow=allow, receivers=1,
                             location=entry.location))
    return found


def _frame_size(value: str, location: Location) -> int:
    size = int(parse_size(value, location))
    if size < 64:
        raise ConfigError(f"must be at least 64 bytes, got {size}", location)
    return size


def _seconds(value: str, location: Location) -> float:
    seconds = float(parse_duration(value, location))
    if seconds <= 0:
        raise ConfigError("must be more than 0s", location)
    return seconds


def _build_listener(section: Section, name: str, fmt: Format, udp: Entry) -> ListenerConfig:
    e = section.entries
    host, port = parse_hostport(udp.value, udp.location)
    app = _value(e, "app", "default", _text)
    source = _value(e, "source", "uwsgi", _text)
    algo_entry = _single(e, "algo")
    algo = algo_entry.value if algo_entry else "aes-256-cbc"
    if algo_entry:
        _check_algo(algo, algo_entry.location)
    iv_entry = _single(e, "iv")
    iv = iv_entry.value if iv_entry else None
    secret_entries = [x for x in e if x.key == "secret"]
    key_entries = [x for x in e if x.key == "key"]
    allow_entries = [x for x in e if x.key == "allow"]
    _only_for(fmt, "crypto", [*secret_entries, *([algo_entry] if algo_entry else []),
                              *([iv_entry] if iv_entry else [])])
    _only_for(fmt, "native", key_entries + [x for x in e if x.key in _NATIVE_BOUNDS])
    if fmt == "crypto" and not secret_entries:
        raise ConfigError(f"[{section.name}] has format = crypto but no secret = line",
                          section.location)
    if fmt == "native" and not key_entries:
        raise ConfigError(f"[{section.name}] has format = native but no key = line "
                          "(make one with `shipper keygen`)", section.location)
    allow: tuple[Network, ...] = tuple(parse_network(x.value, x.location) for x in allow_entries)
    return ListenerConfig(
        name=name, host=host, port=port, format=fmt, app=app, source=source,
        secrets=tuple(_parse_secret(x, algo, iv, None) for x in secret_entries),
        keys=_parse_keys(key_entries),
        allow=allow or LOOPBACK_NETWORKS,
        max_skew=_value(e, "max-skew", 300.0, parse_duration),
        max_datagram=_value(e, "max-datagram", 65507,
                            lambda v, loc: parse_int(v, loc, minimum=64)),
        rcvbuf=_value(e, "rcvbuf", 32 << 20, parse_size),
        sender_rate=float(_value(e, "sender-rate", 0, parse_int)),
        replay_window=_value(e, "replay-window", 65536, parse_int),
        max_streams=_value(e, "max-streams", 4096, _positive),
        max_pending=_value(e, "max-pending", 65536, _positive),
        max_stream_pending=_value(e, "max-stream-pending", 4096, _positive),
        receivers=_value(e, "receivers", 1, _receivers),
        location=section.location,
    )


def _positive(value: str, location: Location) -> int:
    return parse_int(value, location, minimum=1)


def _receivers(value: str, location: Location) -> int:
    count = parse_int(value, location, minimum=1)
    if count > MAX_RECEIVERS:
        # More processes than cores only contend for the one the main process needs.
        raise ConfigError(f"must be at most {MAX_RECEIVERS}, got {count}", location)
    return count


def _parse_keys(entries: list[Entry]) -> tuple[str, ...]:
    """Check each `key = ` token now, so a mistyped key fails at load with its line."""
    seen: dict[int, Location] = {}
    for entry in entries:
        try:
            key = parse_key_token(entry.value)
        except WireError as exc:
            raise ConfigError(str(exc), entry.location) from None
        if key.key_id in seen:
            raise ConfigError(f"key id {key.key_id:08x} is already given at {seen[key.key_id]}",
                              entry.location)
        seen[key.key_id] = entry.location
    return tuple(entry.value.strip() for entry in entries)


def _only_for(fmt: Format, wanted: Format, entries: list[Entry]) -> None:
    if fmt != wanted and entries:
        raise ConfigError(f"only meaningful for format = {wanted}", entries[0].location)


_CLUSTER_KEYS = {"nats", "node", "replicas", "spool-size", "heartbeat", "creds", "tls-ca",
                 "tls-cert", "tls-key"}
_NODE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _nats_urls(value: str, location: Location) -> tuple[str, ...]:
    urls = tuple(u.strip() for u in value.split(","))
    for url in urls:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("nats", "tls") or not rest:
            raise ConfigError(f"expected nats://HOST:PORT[,nats://HOST:PORT...]; got {url!r}",
                              location)
    return urls


def _node_name(value: str, location: Location) -> str:
    if not _NODE_NAME.fullmatch(value):
        raise ConfigError(f"node name {value!r} may hold only letters, digits, '.', '_' and "
                          "'-' (1 to 64 of them)", location)
    return value


def _replicas(value: str, location: Location) -> int:
    count = parse_int(value, location, minimum=1)
    if count > 5:
        raise ConfigError(f"replicas must be 1 to 5 (JetStream's limit); got {count}",
                          location)
    return count


def _heartbeat(value: str, location: Location) -> float:
    seconds = parse_duration(value, location)
    if not 0.5 <= seconds <= 60:
        raise ConfigError(f"heartbeat must be 0.5s to 60s; got {value}", location)
    return seconds


def _path(value: str, location: Location) -> Path:
    return Path(_text(value, location))


def _build_cluster(section: Section) -> ClusterConfig:
    _check_keys(section, _CLUSTER_KEYS)
    e = section.entries
    nats = _single(e, "nats")
    if nats is None:
        raise ConfigError("[cluster] needs nats = nats://HOST:PORT[,...]", section.location)
    host = socket.gethostname().split(".")[0] or "node"
    default_node = host if _NODE_NAME.fullmatch(host) else "node"
    return ClusterConfig(
        nats=_nats_urls(nats.value, nats.location),
        node=_value(e, "node", default_node, _node_name),
        replicas=_value(e, "replicas", 3, _replicas),
        spool_size=_value(e, "spool-size", 1 << 30, parse_size),
        heartbeat=_value(e, "heartbeat", 5.0, _heartbeat),
        creds=_value(e, "creds", None, _path),
        tls_ca=_value(e, "tls-ca", None, _path),
        tls_cert=_value(e, "tls-cert", None, _path),
        tls_key=_value(e, "tls-key", None, _path),
        location=section.location)


def build_config(sections: list[Section], filename: str) -> Config:
    """Check sections and keys and build the `Config`; errors name file, line and key."""
    collector: Section | None = None
    cluster: ClusterConfig | None = None
    listeners: list[ListenerConfig] = []
    drains: list[DrainConfig] = []
    apps: list[AppRules] = []
    app_names: list[tuple[str, Location | None]] = []
    for section in sections:
        kind, _, name = section.name.partition(":")
        if section.name == "collector":
            if collector is not None:
                raise ConfigError("[collector] given twice", section.location)
            collector = section
        elif section.name == "cluster":
            if cluster is not None:
                raise ConfigError("[cluster] given twice", section.location)
            cluster = _build_cluster(section)
        elif kind == "listener" and name and _is_logplex(section):
            drains.append(build_drain(section, name))
        elif kind == "listener" and name:
            listeners.extend(_build_listeners(section, name))
        elif kind == "app" and name:
            # Parsed here, once: the server and `check-config` get typed rules, and a bad
            # alarm line fails the load with its file, line and key.
            app_names.append((name, section.location))
            apps.append(parse_app(AppSection(name, tuple(section.entries), section.location)))
        else:
            raise ConfigError(
                f"unknown section [{section.name}]; use [collector], [cluster], "
                "[listener:NAME], [app:NAME]", section.location)
    _check_unique([(listener.name, listener.location) for listener in listeners]
                  + [(drain.name, drain.location) for drain in drains], "listener")
    _check_unique(app_names, "app")
    seen: dict[tuple[str, str, int], str] = {}
    for listener in listeners:
        # TCP and TLS share the kernel's TCP ports; UDP ports are another space.
        space = "udp" if listener.transport == "udp" else "tcp"
        address = (space, listener.host, listener.port)
        if address in seen:
            raise ConfigError(f"{space} address {listener.host}:{listener.port} is already "
                              f"used by [listener:{seen[address]}]", listener.location)
        seen[address] = listener.name
    store, http, level, fmt = _build_collector(collector)
    _check_drain_addresses(drains, http)
    return Config(store=store, http=http, listeners=tuple(listeners), apps=tuple(apps),
                  log_level=level, log_format=cast(Any, fmt), source=filename,
                  cluster=cluster, drains=tuple(drains))


def _is_logplex(section: Section) -> bool:
    """Whether a listener section is a Heroku drain (`format = logplex`)."""
    return any(e.key == "format" and e.value == "logplex" for e in section.entries)


def _check_drain_addresses(drains: list[DrainConfig], http: HttpConfig) -> None:
    """Two drains, or a drain and the API, cannot share a TCP address."""
    seen: dict[tuple[str, int], str] = {(http.host, http.port): "[collector] http"}
    for drain in drains:
        address = (drain.host, drain.port)
        if address in seen:
            raise ConfigError(f"http address {drain.host}:{drain.port} is already used by "
                              f"{seen[address]}", drain.location)
        seen[address] = f"[listener:{drain.name}]"


def _check_unique(items: list[tuple[str, Location | None]], kind: str) -> None:
    names: set[str] = set()
    for name, location in items:
        if name in names:
            raise ConfigError(f"[{kind}:{name}] given twice", location)
        names.add(name)


def load_default_config(data_dir: Path = Path("./data"),
                        env: Mapping[str, str] | None = None) -> Config:
    """The embedded default: crypto on 127.0.0.1:1717, socket on :1718, API on :8080.

    The secret comes from $LOG_SECRET; without it one is generated once, kept in the data
    directory (mode 0600) so that dynos configured with it keep working across restarts,
    and announced in the returned notices.
    """
    env = os.environ if env is None else env
    notices: list[str] = []
    secret = env.get("LOG_SECRET")
    if not secret:
        secret, created = _stored_secret(data_dir / "generated-secret")
        where = data_dir / "generated-secret"
        notices.append(f"LOG_SECRET is not set; {'generated' if created else 'using'} the "
                       f"secret kept in {where}: {secret}")
    here = Location("<embedded default>", 0)
    listeners = (
        ListenerConfig(name="crypto", host="127.0.0.1", port=1717, format="crypto",
                       app="default", source="uwsgi",
                       secrets=(CryptoSecret(secret, "aes-256-cbc", None, None, here),),
                       location=here),
        ListenerConfig(name="socket", host="127.0.0.1", port=1718, format="socket",
                       app="default", source="uwsgi", location=here),
    )
    return Config(store=StoreConfig(data_dir=data_dir), listeners=listeners,
                  notices=tuple(notices))


def _stored_secret(path: Path) -> tuple[str, bool]:
    try:
        return path.read_text(encoding="ascii").strip(), False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    secret = secrets_module.token_urlsafe(24)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secret + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    return secret, True
