"""The ini reader and config builder: uWSGI semantics and located errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from collector.config.ini import parse_ini
from collector.config.load import load_config, load_default_config
from collector.config.units import parse_duration, parse_hostport, parse_size
from collector.errors import ConfigError, Location


def write(tmp_path: Path, text: str) -> Path:
    """Write an ini file and return its path."""
    path = tmp_path / "collector.ini"
    path.write_text(text)
    return path


def test_repeated_keys_comments_and_env(tmp_path: Path) -> None:
    """Keys repeat, ; and # start comment lines, a ; inside a value stays, $(ENV) expands."""
    sections = parse_ini("[app:x]\n; comment\n# comment\nalarm = a mail:smtp://h;mail_to=o\n"
                         "alarm = b cmd:$(CMD)\n", "f.ini", {"CMD": "/bin/true"})
    values = [entry.value for entry in sections[0].entries]
    assert values == ["a mail:smtp://h;mail_to=o", "b cmd:/bin/true"]
    assert sections[0].entries[1].location == Location("f.ini", 5, "alarm")


def test_unset_env_names_file_line_and_key(tmp_path: Path) -> None:
    """An unset variable is an error at its line and key, not an empty secret."""
    path = write(tmp_path, "[listener:d]\nudp = :1717\nformat = crypto\n"
                           "secret = $(NOPE_NOT_SET)\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.location == Location(str(path), 4, "secret")
    assert "NOPE_NOT_SET" in str(caught.value)
    assert str(caught.value).startswith(f"{path}:4: secret:")


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("[collector]\nbogus = 1\n", 2, "bogus", "unknown key"),
    ("[collector]\nretention = forever\n", 2, "retention", "duration"),
    ("[collector]\nhttp = 0.0.0.0:8080\n", 2, "http", "api-token"),
    ("[listener:a]\nudp = 127.0.0.1:99999\nformat = socket\n", 2, "udp", "HOST:PORT"),
    ("[listener:a]\nudp = :1\nformat = carrier-pigeon\n", 3, "format", "crypto"),
    ("[listener:a]\nudp = :1\nformat = crypto\nsecret = s\nalgo = rot13\n", 5, "algo",
     "unsupported"),
    ("[listener:a]\nudp = :1\nformat = socket\nsecret = s\n", 4, "secret", "crypto"),
    ("[listener:a]\nudp = :1\nformat = socket\nallow = 10.0.0.0/33\n", 4, "allow", "network"),
    ("[listener:a]\nudp = :1\nformat = crypto\nsecret = secret=s,colour=red\n", 4, "secret",
     "colour"),
    ("[collector]\nlog-level = chatty\n", 2, "log-level", "one of"),
    ("[collector]\nretention = 1d\nretention = 2d\n", 3, "retention", "once"),
    ("[listener:a]\nudp = :1\nformat = socket\nreceivers = 0\n", 4, "receivers",
     "at least 1"),
    ("[listener:a]\nudp = :1\nformat = socket\nreceivers = two\n", 4, "receivers",
     "whole number"),
    ("[listener:a]\nudp = :1\nformat = socket\nreceivers = 65\n", 4, "receivers",
     "at most 64"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str,
                                       words: str) -> None:
    """Every kind of bad value points at where it was written."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.location == Location(str(path), line, key), caught.value
    assert words in str(caught.value)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("[listener:a]\nformat = socket\n", 1, "needs udp"),
    ("[listener:a]\nudp = :1\nformat = crypto\n", 1, "no secret"),
    ("[nonsense]\n", 1, "unknown section"),
    ("[listener:a]\nudp = :1\nformat = socket\n[listener:a]\nudp = :2\nformat = socket\n", 4,
     "twice"),
    ("[listener:a]\nudp = :1\nformat = socket\n[listener:b]\nudp = :1\nformat = socket\n", 4,
     "already used"),
    ("key = value\n", 1, "outside"),
    ("[collector]\njust words\n", 2, "key = value"),
])
def test_section_errors_name_file_and_line(tmp_path: Path, text: str, line: int,
                                           words: str) -> None:
    """Errors about a whole section or line name the file and line."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.location is not None
    assert (caught.value.location.file, caught.value.location.line) == (str(path), line)
    assert words in str(caught.value)


def test_full_example(tmp_path: Path) -> None:
    """The DESIGN.md example's collector and listener parts load into typed values."""
    path = write(tmp_path, """
[collector]
data-dir = ./d
http = 0.0.0.0:8080
api-token = $(TOKEN)
retention = 7d
retention-size = 10G

[listener:dynos]
udp = 0.0.0.0:1717
format = crypto
algo = aes-256-cbc
secret = $(LOG_SECRET)
secret = algo=aes-128-cbc,secret=old,iv=99,app=legacy
app = myapp
sender-rate = 5000
""")
    config = load_config(path, env={"TOKEN": "t", "LOG_SECRET": "new"})
    assert config.http.token == "t"
    assert config.store.retention == 7 * 86400
    assert config.store.retention_size == 10 << 30
    (listener,) = config.listeners
    assert (listener.host, listener.port, listener.app) == ("0.0.0.0", 1717, "myapp")
    first, second = listener.secrets
    assert (first.secret, first.algo, first.iv, first.app) == ("new", "aes-256-cbc", None,
                                                                None)
    assert (second.secret, second.algo, second.iv, second.app) == ("old", "aes-128-cbc",
                                                                    "99", "legacy")
    assert listener.sender_rate == 5000


def test_default_config_keeps_a_generated_secret(tmp_path: Path) -> None:
    """Without $LOG_SECRET a secret is generated once, kept 0600, reused next start."""
    first = load_default_config(tmp_path / "data", env={})
    second = load_default_config(tmp_path / "data", env={})
    secret = first.listeners[0].secrets[0].secret
    assert len(secret) >= 32
    assert second.listeners[0].secrets[0].secret == secret
    assert os.stat(tmp_path / "data" / "generated-secret").st_mode & 0o777 == 0o600
    assert secret in first.notices[0]
    given = load_default_config(tmp_path / "other", env={"LOG_SECRET": "mine"})
    assert given.listeners[0].secrets[0].secret == "mine"
    assert [(lst.format, lst.port) for lst in given.listeners] == [("crypto", 1717),
                                                                   ("socket", 1718)]


def test_units() -> None:
    """Durations, sizes and addresses as operators write them."""
    here = Location("f", 1, "k")
    assert parse_duration("90", here) == 90
    assert parse_duration("500ms", here) == 0.5
    assert parse_duration("2w", here) == 14 * 86400
    assert parse_size("512M", here) == 512 << 20
    assert parse_size("64KiB", here) == 64 << 10
    assert parse_hostport(":1717", here) == ("0.0.0.0", 1717)
    assert parse_hostport("[::1]:9", here) == ("::1", 9)


def test_unreadable_file() -> None:
    """A missing file is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"cannot read config file /nonexistent\.ini"):
        load_config("/nonexistent.ini")


def test_inline_comments_outside_app_sections() -> None:
    """`node = col-a   ; the host name` (the issue's [cluster] example) loses its comment;
    an [app:] line keeps its ` ;`, which may be part of an alarm's regex, as in uWSGI."""
    sections = parse_ini("[cluster]\nnode = col-a            ; default: the host name\n"
                         "nats = nats://a:4222;x\n"
                         "[app:web]\nlog-alarm = hook ERROR ;fatal\n", "c.ini", {})
    cluster, app = sections
    assert [(e.key, e.value) for e in cluster.entries] == [("node", "col-a"),
                                                          ("nats", "nats://a:4222;x")]
    assert app.entries[0].value == "hook ERROR ;fatal"
