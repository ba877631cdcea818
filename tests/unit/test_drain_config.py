"""`[listener:NAME]` with `format = logplex`: keys, the token from the environment,
located errors, and the drain's credential check."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from collector.config.drain import DrainCredential
from collector.config.load import load_config
from collector.config.model import Config
from collector.errors import ConfigError, Location
from collector.listen.drain import check_credentials

TOKEN = "0123456789abcdef0123"


def load(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> Config:
    """The Config of `body`."""
    path = tmp_path / "c.ini"
    path.write_text(body)
    return load_config(path, env or {"SHOP_TOKEN": TOKEN})


def test_drain_section_with_token_from_environment(tmp_path: Path) -> None:
    """A logplex listener becomes a DrainConfig, its token read from $(VAR)."""
    config = load(tmp_path, "[listener:heroku]\nformat = logplex\nhttp = 127.0.0.1:8443\n"
                            "drain = shop:$(SHOP_TOKEN)\ndrain = blog:" + "x" * 20 + "\n"
                            "max-body = 2M\n")
    (drain,) = config.drains
    assert config.listeners == ()
    assert (drain.name, drain.host, drain.port, drain.max_body) == ("heroku", "127.0.0.1",
                                                                    8443, 2 << 20)
    assert [(d.app, d.token) for d in drain.drains] == [("shop", TOKEN), ("blog", "x" * 20)]
    assert TOKEN not in repr(drain)


@pytest.mark.parametrize(("body", "line", "message"), [
    ("http = 127.0.0.1:1\ndrain = shop\n", 4, "APP:TOKEN"),
    ("http = 127.0.0.1:1\ndrain = shop:short\n", 4, "at least 16"),
    ("http = 127.0.0.1:1\ndrain = shop:$(SHOP_TOKEN)\ndrain = shop:$(SHOP_TOKEN)\n", 5,
     "given twice"),
    ("http = 0.0.0.0:8443\ndrain = shop:$(SHOP_TOKEN)\n", 3, "tls-cert"),
    ("http = 127.0.0.1:1\ndrain = shop:$(SHOP_TOKEN)\nudp = 127.0.0.1:2\n", 5, "unknown key"),
    ("http = 127.0.0.1:1\ndrain = shop:$(SHOP_TOKEN)\ntls-cert = /c.pem\n", 5, "tls-key"),
    ("http = 127.0.0.1:1\ndrain = shop:$(SHOP_TOKEN)\nbehind-proxy = maybe\n", 5,
     "yes or no"),
])
def test_errors_name_the_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    """Each mistake is a ConfigError at its file and line."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[listener:heroku]\nformat = logplex\n" + body)
    assert message in str(caught.value)
    assert f"c.ini:{line}" in str(caught.value)


def test_plain_http_off_loopback_needs_behind_proxy(tmp_path: Path) -> None:
    """Plain HTTP on a public address is allowed only when a TLS proxy is said to front it."""
    config = load(tmp_path, "[listener:heroku]\nformat = logplex\nhttp = 0.0.0.0:8080\n"
                            "drain = shop:$(SHOP_TOKEN)\nbehind-proxy = yes\n")
    assert config.drains[0].behind_proxy


def test_drain_cannot_take_the_api_address(tmp_path: Path) -> None:
    """A drain on the API's address is refused at load."""
    with pytest.raises(ConfigError, match="already used"):
        load(tmp_path, "[collector]\nhttp = 127.0.0.1:9000\n[listener:heroku]\n"
                       "format = logplex\nhttp = 127.0.0.1:9000\ndrain = shop:$(SHOP_TOKEN)\n")


def basic(user: str, password: str) -> str:
    """A Basic Authorization header."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_check_credentials() -> None:
    """The right app and token find the drain; anything else finds none."""
    here = Location("c.ini", 1)
    drains = (DrainCredential("shop", TOKEN, here), DrainCredential("blog", "y" * 20, here))
    assert check_credentials(drains, basic("shop", TOKEN)) is drains[0]
    assert check_credentials(drains, basic("blog", "y" * 20)) is drains[1]
    for header in (None, "", basic("shop", "y" * 20), basic("shop", TOKEN + "x"),
                   basic("nobody", TOKEN), "Bearer " + TOKEN, "Basic !!!", "Basic " +
                   base64.b64encode(b"no-colon").decode()):
        assert check_credentials(drains, header) is None, header
