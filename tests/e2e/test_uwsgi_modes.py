"""Each mode of `shipper uwsgi-config`, pasted into a uwsgi.ini, works with a real uWSGI
and a real collector; in native mode uWSGI starts the sidecar and stops it with itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from logwire.native import generate_key
from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_udp_port, wait_for
from tests.support.shipper_proc import gone, shipper, shipper_env
from tests.support.uwsgi_proc import UwsgiProcess, wait_for_spawn_lines

pytestmark = [pytest.mark.e2e, pytest.mark.uwsgi]

SECRET = "a-secret-that-is-thirty-two-byte"
KEY = generate_key()
CONFIG = """
[listener:crypto]
udp = 127.0.0.1:{port:crypto}
format = crypto
secret = $(LOG_SECRET)

[listener:socket]
udp = 127.0.0.1:{port:socket}
format = socket

[listener:native]
udp = 127.0.0.1:{port:native}
format = native
key = $(LOG_KEY)
"""


@pytest.fixture
def collector(new_collector: Callable[..., CollectorProcess]) -> CollectorProcess:
    """A collector with one listener per format."""
    made = new_collector(config=CONFIG, env={"LOG_SECRET": SECRET, "LOG_KEY": KEY.token})
    made.start()
    return made


def sidecars_of(uwsgi: UwsgiProcess) -> list[psutil.Process]:
    """`shipper run` processes under the uWSGI master."""
    assert uwsgi.process is not None
    children = psutil.Process(uwsgi.process.pid).children(recursive=True)
    return [p for p in children if "run" in p.cmdline() and any("shipper" in part
                                                                 for part in p.cmdline())]


@pytest.mark.parametrize("mode", ["crypto", "socket", "native"])
def test_uwsgi_config_output_ships_with_a_real_uwsgi(
        collector: CollectorProcess, new_uwsgi: Callable[..., UwsgiProcess], mode: str) -> None:
    """The printed lines make uWSGI ship its start-up lines and request lines, named
    shop/$(DYNO), to the listener of that format; the worker of each request is known
    (the master's spawn lines arrived too)."""
    listen = free_udp_port()
    done = shipper("uwsgi-config", "--collector", f"127.0.0.1:{collector.port(mode)}",
                   "--app", "shop", "--mode", mode, "--listen", f"127.0.0.1:{listen}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    uwsgi = new_uwsgi(lines=lines, env=shipper_env(DYNO="web.7", LOG_SECRET=SECRET,
                                                   LOG_KEY=KEY.token))
    uwsgi.start()
    wait_for_spawn_lines(collector, "shop", uwsgi.processes)
    assert uwsgi.get(f"/{mode}?x=1") == 200

    def requests() -> list[dict[str, Any]]:
        """The request line this test made, once it is at the collector."""
        out = collector.cli("tail", "--json", "-n", "1000", "--app", "shop")
        found = [json.loads(line) for line in out.stdout.splitlines() if line]
        return [r for r in found if r.get("path") == f"/{mode}?x=1"]

    (record,) = wait_for(requests, 15, f"the request line via {mode}")
    assert (record["source"], record["format"], record["status"]) == ("web.7", mode, 200)
    assert record["worker"] in {1, 2}
    if mode == "native":
        (sidecar,) = sidecars_of(uwsgi)
        uwsgi.stop()
        wait_for(lambda: gone(sidecar), 10, "the sidecar to stop with uWSGI")
        shipped = collector.cli("tail", "-n", "1000", "--app", "shop").stdout
        # uWSGI logs the daemon's command line; the key is not on it.
        assert '[uwsgi-daemons] spawning "shipper run' in shipped
        assert KEY.token not in shipped
