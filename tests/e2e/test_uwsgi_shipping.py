"""A real uWSGI ships with its own crypto and socket loggers to a real collector; the
lines show in `collector tail` with the right app, source and parsed fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.uwsgi_proc import UwsgiProcess, wait_for_spawn_lines

pytestmark = [pytest.mark.e2e, pytest.mark.uwsgi]

SECRET_128 = "sixteen-byte-key"
SECRET_256 = "a-secret-that-is-thirty-two-byte"

CONFIG = """
[listener:crypto256]
udp = 127.0.0.1:{port:c256}
format = crypto
algo = aes-256-cbc
secret = $(SECRET_256)
app = fallback

[listener:crypto256iv]
udp = 127.0.0.1:{port:c256iv}
format = crypto
algo = aes-256-cbc
secret = $(SECRET_256)
iv = 0123456789abcdef
app = fallback

[listener:crypto128]
udp = 127.0.0.1:{port:c128bare}
format = crypto
algo = aes-128-cbc
secret = $(SECRET_128)
app = fallback

[listener:crypto128iv]
udp = 127.0.0.1:{port:c128}
format = crypto
algo = aes-128-cbc
secret = $(SECRET_128)
iv = 1234
app = fallback

[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
app = fallback
"""


def tail_json(collector: CollectorProcess, *args: str) -> list[dict[str, Any]]:
    """`collector tail --json ARGS` parsed."""
    done = collector.cli("tail", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line]


@pytest.fixture
def collector(new_collector: Callable[..., CollectorProcess]) -> CollectorProcess:
    """A collector with aes-256 and aes-128 listeners, with and without an iv, and a socket
    listener."""
    made = new_collector(config=CONFIG, env={"SECRET_128": SECRET_128,
                                             "SECRET_256": SECRET_256})
    made.start()
    return made


@pytest.mark.parametrize(("logger", "app", "source"), [
    ("crypto:addr=127.0.0.1:{c256},algo=aes-256-cbc,secret=" + SECRET_256
     + ",prefix=shop/web.1", "shop", "web.1"),
    ("crypto:addr=127.0.0.1:{c256},algo=aes-256-cbc,secret=" + SECRET_256,
     "fallback", "uwsgi"),
    ("crypto:addr=127.0.0.1:{c256iv},algo=aes-256-cbc,secret=" + SECRET_256
     + ",iv=0123456789abcdef,prefix=shop/web.2", "shop", "web.2"),
    ("crypto:addr=127.0.0.1:{c128},algo=aes-128-cbc,secret=" + SECRET_128
     + ",iv=1234,prefix=api/worker.2", "api", "worker.2"),
    ("crypto:addr=127.0.0.1:{c128bare},algo=aes-128-cbc,secret=" + SECRET_128
     + ",prefix=api/worker.3", "api", "worker.3"),
    ("socket:127.0.0.1:{plain},blog/web.3:", "blog", "web.3"),
], ids=["aes256-prefix", "aes256-bare", "aes256-iv-prefix", "aes128-iv-prefix",
        "aes128-prefix", "socket-prefix"])
def test_requests_reach_tail_with_fields(collector: CollectorProcess,
                                          new_uwsgi: Callable[..., UwsgiProcess],
                                          logger: str, app: str, source: str) -> None:
    """Each request the app serves appears once in tail output, parsed, under the app and
    source the logger's prefix names (or the listener's defaults without one)."""
    ports = {name: collector.port(name)
             for name in ("c256", "c256iv", "c128", "c128bare", "plain")}
    uwsgi = new_uwsgi(lines=[f"logger = {logger.format(**ports)}"])
    uwsgi.start()

    wait_for_spawn_lines(collector, app, uwsgi.processes)
    assert uwsgi.get("/hello?x=1") == 200
    assert uwsgi.get("/status/503") == 503

    def requests() -> list[dict[str, Any]]:
        found = [r for r in tail_json(collector, "-n", "500", "--app", app)
                 if r.get("status") is not None]
        return found if len(found) >= 2 else []

    found = wait_for(requests, 15, "both request lines in tail")
    # Two workers send their own datagrams, which a loaded machine may reorder.
    by_path = {r["path"]: r for r in found}
    assert len(found) == len(by_path) == 2
    hello, failed = by_path["/hello?x=1"], by_path["/status/503"]
    assert (hello["method"], hello["path"], hello["status"]) == ("GET", "/hello?x=1", 200)
    assert (failed["path"], failed["status"]) == ("/status/503", 503)
    for record in found:
        assert record["app"] == app
        assert record["source"] == source
        assert record["pid"] > 0
        assert record["msecs"] >= 0
        assert record["size"] > 0
    # The master's spawn lines came first, so each request knows its worker.
    assert hello["worker"] in {1, 2}
    text = collector.cli("tail", "-n", "5", "--app", app, "--color", "never").stdout
    assert f"{app}[{source}]: [pid: " in text
