"""deploy/: the Heroku layout booted the way the platform runs it, and the collector's
example config checked."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logwire.native import generate_key
from shipper.uwsgi_config import ShipOptions, uwsgi_lines
from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_port, tcp_open, wait_for
from tests.support.shipper_proc import shipper_env

ROOT = Path(__file__).resolve().parents[2]
HEROKU = ROOT / "deploy" / "heroku"
SECRET = "heroku-layout-test-secret-32byte"


def ini_options(text: str) -> dict[str, list[str]]:
    """key -> values of an ini file's non-comment lines."""
    options: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and line[0] not in ";#[" and "=" in line:
            key, _, value = line.partition("=")
            options.setdefault(key.strip(), []).append(value.strip())
    return options


def test_heroku_layout_has_what_the_platform_and_the_seed_need() -> None:
    """Procfile, requirements, .python-version, the uwsgi.ini options the Heroku guide
    asks for, and shipping lines that are exactly what `shipper uwsgi-config` prints."""
    assert (HEROKU / "Procfile").read_text() == "web: uwsgi uwsgi.ini\n"
    assert re.fullmatch(r"3\.\d+\n", (HEROKU / ".python-version").read_text())
    requirements = (HEROKU / "requirements.txt").read_text().splitlines()
    assert "uwsgi==2.0.31" in requirements
    assert os.access(HEROKU / "bin" / "post_compile", os.X_OK)
    text = (HEROKU / "uwsgi.ini").read_text()
    options = ini_options(text)
    assert options["http-socket"] == [":$(PORT)"]
    for flag in ("master", "die-on-term", "memory-report"):
        assert options[flag] == ["true"], flag
    assert int(options["harakiri"][0]) < 30
    generated = uwsgi_lines(ShipOptions(collector="$(LOG_COLLECTOR)", app="myapp",
                                        mode="crypto"))
    assert "\n".join(generated) in text


@pytest.mark.e2e
@pytest.mark.uwsgi
def test_heroku_layout_boots_ships_and_stops_on_sigterm(
        new_collector: Callable[..., CollectorProcess], tmp_path: Path) -> None:
    """The Procfile's web command, run from a copy of the layout with PORT, DYNO and the
    config vars set, serves on $PORT and ships its logs to a collector; SIGTERM to the
    dyno's processes (what Heroku sends) stops uWSGI instead of reloading it."""
    collector = new_collector(config="[listener:dynos]\nudp = 127.0.0.1:{port:dynos}\n"
                              "format = crypto\nsecret = $(LOG_SECRET)\n",
                              env={"LOG_SECRET": SECRET})
    collector.start()
    app = tmp_path / "app"
    shutil.copytree(HEROKU, app)
    web = (app / "Procfile").read_text().split("web:", 1)[1].strip()
    port = free_port()
    env = shipper_env(PORT=str(port), DYNO="web.1", LOG_SECRET=SECRET,
                      LOG_COLLECTOR=f"127.0.0.1:{collector.port('dynos')}",
                      LOG_KEY=generate_key().token)
    with (tmp_path / "dyno.log").open("wb") as out:
        dyno = subprocess.Popen(["bash", "-c", web], cwd=app, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: dyno.poll() is None and tcp_open(port), 20, "uWSGI on $PORT")
        status = subprocess.run([sys.executable, "-c",
                                 f"import urllib.request as u; print(u.urlopen("
                                 f"'http://127.0.0.1:{port}/hello').status)"],
                                capture_output=True, text=True, timeout=20, check=True)
        assert status.stdout.strip() == "200"

        def shipped() -> list[dict[str, Any]]:
            """The app's records at the collector, once the request line is among them."""
            done = collector.cli("tail", "--json", "-n", "1000", "--app", "myapp")
            found = [json.loads(line) for line in done.stdout.splitlines() if line]
            return found if any(r.get("path") == "/hello" for r in found) else []

        found = wait_for(shipped, 15, "the request line at the collector")
        assert {r["source"] for r in found} == {"web.1"}
        assert any("spawned uWSGI worker 4" in r["line"] for r in found)
        # Heroku signals every process of the dyno.
        os.killpg(dyno.pid, signal.SIGTERM)
        dyno.wait(20)
    finally:
        if dyno.poll() is None:
            os.killpg(dyno.pid, signal.SIGKILL)
            dyno.wait(10)
    output = (tmp_path / "dyno.log").read_text(errors="replace")
    assert "GET /hello" in output  # logger = stdio: `heroku logs` still has the lines
    assert "goodbye to uWSGI" in output
    assert "reloading" not in output.lower()
    assert not tcp_open(port)


def test_collector_example_config_is_valid() -> None:
    """deploy/collector/collector.ini passes `collector check-config`."""
    env = {**os.environ, "LOG_SECRET": SECRET, "LOG_KEY": generate_key().token,
           "COLLECTOR_TOKEN": "t" * 32}
    done = subprocess.run([sys.executable, "-m", "collector", "check-config", "--config",
                           str(ROOT / "deploy" / "collector" / "collector.ini")],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
