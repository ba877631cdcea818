"""`format = syslog` listeners in the config: udp, tcp and tls from one section, their
keys checked with file, line and key; and how a reload treats a changed stream listener."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from collector.config.load import load_config
from collector.errors import ConfigError, Location
from collector.server.reload import plan_reload


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    """Write and load an ini file."""
    path = tmp_path / "c.ini"
    path.write_text(text)
    return load_config(path, env={}), str(path)


def test_one_section_gives_a_listener_per_transport(tmp_path: Path) -> None:
    """udp keeps the section's name, tcp and tls are NAME/tcp and NAME/tls with their own
    address and the section's settings; tls admits any address unless `allow` says."""
    config, _ = load(tmp_path, "[listener:sys]\nformat = syslog\nudp = 127.0.0.1:5514\n"
                     "tcp = 127.0.0.1:5514\ntls = 0.0.0.0:6514\ntls-cert = c.pem\n"
                     "tls-key = k.pem\ntls-client-ca = ca.pem\nsource-from = procid\n"
                     "app = fallback\nmax-frame = 8k\nmax-connections = 5\n"
                     "idle-timeout = 1m\nframe-timeout = 5s\n")
    names = [(c.name, c.transport, c.port) for c in config.listeners]
    assert names == [("sys", "udp", 5514), ("sys/tcp", "tcp", 5514), ("sys/tls", "tls", 6514)]
    tls = config.listeners[2]
    assert (tls.source_from, tls.app, tls.max_frame, tls.max_connections) == (
        "procid", "fallback", 8192, 5)
    assert (tls.idle_timeout, tls.frame_timeout) == (60.0, 5.0)
    assert tls.tls_client_ca == Path("ca.pem")
    assert any(n.prefixlen == 0 for n in tls.allow)
    assert all(n.prefixlen > 0 for n in config.listeners[1].allow)


@pytest.mark.parametrize(("body", "line", "key", "message"), [
    ("format = syslog\n", 1, None, "needs udp =, tcp = or tls ="),
    ("format = syslog\ntls = :6514\ntls-key = k\n", 3, "tls", "no tls-cert"),
    ("format = syslog\ntcp = :601\ntls-cert = c\n", 4, "tls-cert", "only meaningful with tls"),
    ("format = socket\nudp = :1\ntcp = :601\n", 4, "tcp", "only meaningful for format = syslog"),
    ("format = syslog\ntcp = :601\nsource-from = pid\n", 4, "source-from", "hostname, procid"),
    ("format = syslog\ntcp = :601\nmax-frame = 10\n", 4, "max-frame", "at least 64"),
    ("format = syslog\nudp = :1\nidle-timeout = 5s\n", 4, "idle-timeout", "tcp = or tls ="),
])
def test_bad_keys_name_file_line_and_key(tmp_path: Path, body: str, line: int,
                                         key: str | None, message: str) -> None:
    """Each mistake fails the load at its line and key."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[listener:s]\n" + body)
    assert message in str(caught.value)
    assert caught.value.location == Location(str(tmp_path / "c.ini"), line, key)


def test_tcp_and_udp_may_share_a_port_but_tcp_and_tls_may_not(tmp_path: Path) -> None:
    """UDP and TCP are separate port spaces; TCP and TLS are not."""
    load(tmp_path, "[listener:a]\nformat = syslog\nudp = :514\ntcp = :514\n")
    taken = r"tcp address 0.0.0.0:601 is already used by \[listener:a/tcp\]"
    with pytest.raises(ConfigError, match=taken):
        load(tmp_path, "[listener:a]\nformat = syslog\ntcp = :601\n"
                       "[listener:b]\nformat = syslog\ntls = :601\ntls-cert = c\ntls-key = k\n")


def test_reload_reopens_a_changed_stream_listener(tmp_path: Path) -> None:
    """A stream listener whose settings change is closed and reopened (its connections
    go with it); a UDP one with the same change keeps its socket."""
    old, _ = load(tmp_path, "[listener:s]\nformat = syslog\nudp = :5514\ntcp = :5514\n")
    new = replace(old, listeners=tuple(replace(c, app="other") for c in old.listeners))
    plan = plan_reload(old, new)
    assert [c.name for c in plan.retune] == ["s"]
    assert plan.close == ("s/tcp",)
    assert [c.name for c in plan.open_after] == ["s/tcp"]
