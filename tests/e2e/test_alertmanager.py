"""The `alertmanager:` notifier against a real Alertmanager (Debian's), with a real uWSGI
shipping to a real collector: a segfault becomes an alert with the documented labels and
a generatorURL that finds its lines; an Alertmanager that is down at first gets the alert
once it starts (the outbox retries)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.alarms_api import alarms, wait_alarms
from tests.support.alertmanager_proc import AlertmanagerProcess
from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.uwsgi_proc import UwsgiProcess

pytestmark = [pytest.mark.e2e, pytest.mark.uwsgi]

SECRET = "a-secret-that-is-thirty-two-byte"
LISTENER = """
[listener:dynos]
udp = 127.0.0.1:{port:dynos}
format = crypto
algo = aes-256-cbc
secret = $(LOG_SECRET)
"""
# Retry quickly so that the test of a late Alertmanager does not wait long.
RETRY = "alarm-backoff = 0.2\nalarm-max-backoff = 1\nalarm-retries = 200\n"


@pytest.fixture
def new_alertmanager(tmp_path: Path) -> Iterator[Callable[..., AlertmanagerProcess]]:
    """Makes Alertmanagers (not started) in tmp_path; stops them after the test."""
    made: list[AlertmanagerProcess] = []

    def make() -> AlertmanagerProcess:
        manager = AlertmanagerProcess(tmp_path / f"alertmanager{len(made)}")
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.stop()


def start_pair(new_collector: Callable[..., CollectorProcess],
               new_uwsgi: Callable[..., UwsgiProcess], app_section: str
               ) -> tuple[CollectorProcess, UwsgiProcess]:
    """A collector with `app_section` for app `shop`, and a uWSGI logging to it as
    shop/web.1 through the crypto logger."""
    collector = new_collector(config=LISTENER + "\n[app:shop]\n" + app_section,
                              env={"LOG_SECRET": SECRET})
    collector.start()
    uwsgi = new_uwsgi(processes=1, lines=[
        f"logger = crypto:addr=127.0.0.1:{collector.port('dynos')},algo=aes-256-cbc,"
        f"secret={SECRET},prefix=shop/web.1"])
    uwsgi.start()
    return collector, uwsgi


def held(manager: AlertmanagerProcess, alertname: str) -> list[dict[str, Any]]:
    """The alerts Alertmanager holds for `alertname`."""
    return [a for a in manager.alerts() if a["labels"].get("alertname") == alertname]


def test_segfault_becomes_an_alert_with_labels_and_a_link_to_its_lines(
        new_collector: Callable[..., CollectorProcess],
        new_uwsgi: Callable[..., UwsgiProcess],
        new_alertmanager: Callable[..., AlertmanagerProcess]) -> None:
    """A worker's SIGSEGV: Alertmanager's /api/v2/alerts holds one active alert labelled
    alertname, app, source, condition and severity, with the backtrace as its message,
    startsAt before endsAt, and a generatorURL that, asked of the collector, returns the
    segfault line; the outbox records it delivered."""
    manager = new_alertmanager()
    manager.start()
    collector, uwsgi = start_pair(new_collector, new_uwsgi, f"""
alarm = oncall alertmanager:{manager.url};severity=page;resolve_timeout=10m
alarm-segfault = oncall
""")
    assert uwsgi.get("/segfault") == 0  # the connection dies with the worker

    (found,) = wait_for(lambda: held(manager, "oncall"), 30, "the alert in Alertmanager")
    assert found["labels"] == {"alertname": "oncall", "app": "shop", "source": "web.1",
                               "condition": "segfault", "severity": "page"}
    assert found["status"]["state"] == "active"
    message = found["annotations"]["message"]
    assert "got Segmentation Fault !!!" in message.split("\n")[0]
    assert message.rstrip("\n").endswith("*** end of backtrace ***")
    assert found["annotations"]["summary"].startswith("segfault in shop/web.1: !!! uWSGI")
    assert found["startsAt"] < found["endsAt"]

    link = found["generatorURL"]
    assert link.startswith(f"{collector.url}/v1/logs?app=shop&source=web.1&since=")
    lines = [r["line"] for r in collector.get(link[len(collector.url):])["records"]]
    assert any("got Segmentation Fault" in line for line in lines)

    (entry,) = wait_alarms(collector, "state=delivered", 1, "the alarm delivered")
    assert (entry["plugin"], entry["outcome"]) == ("alertmanager", "HTTP 200")


def test_an_alertmanager_down_at_first_gets_the_alert_when_it_starts(
        new_collector: Callable[..., CollectorProcess],
        new_uwsgi: Callable[..., UwsgiProcess],
        new_alertmanager: Callable[..., AlertmanagerProcess]) -> None:
    """A 5xx line alarms while Alertmanager is not running: the attempts fail and the
    notification stays pending; once Alertmanager starts on that address the outbox's
    retry delivers it and the alert appears there, once."""
    manager = new_alertmanager()
    collector, uwsgi = start_pair(new_collector, new_uwsgi, f"""
alarm = errors alertmanager:{manager.url}
log-alarm = errors HTTP/1\\.[01] 5\\d\\d
{RETRY}""")
    assert uwsgi.get("/status/500") == 500

    def failing() -> list[dict[str, Any]]:
        return [e for e in alarms(collector, "state=pending") if e["attempts"] >= 2]

    (entry,) = wait_for(failing, 30, "failed attempts while Alertmanager is down")
    assert entry["last_error"]
    manager.start()
    (found,) = wait_for(lambda: held(manager, "errors"), 30, "the alert after the start")
    assert found["labels"] == {"alertname": "errors", "app": "shop", "source": "web.1",
                               "condition": "log", "severity": "critical"}
    assert "GET /status/500 " in found["annotations"]["message"]
    (delivered,) = wait_alarms(collector, "state=delivered", 1, "the alarm delivered")
    assert delivered["id"] == entry["id"]
    assert delivered["attempts"] > entry["attempts"]
