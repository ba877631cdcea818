"""The `alertmanager:` notifier: the alert it builds (pure), its options and their located
errors, and its HTTP outcomes against a real loopback server."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from alarms.errors import NotifierError
from alarms.notification import Notification, new_id
from alarms.notifiers.alertmanager import (
    MESSAGE_SIZE,
    AlertmanagerNotifier,
    alert,
    alerts_url,
    check,
    cut,
)
from alarms.notifiers.base import api_url
from collector.config.load import load_config
from collector.errors import ConfigError, Location
from tests.support.net import free_port
from tests.unit.alarm_support import Receiver

BACKTRACE = ("!!! uWSGI process 7 got Segmentation Fault !!!\n*** backtrace of 7 ***\n"
             "*** end of backtrace ***")


def segfault(**changes: Any) -> Notification:
    """A segfault notification as the engine makes it (first seen 2026-11-30T00:00:00Z)."""
    fields: dict[str, Any] = {
        "id": new_id(), "alarm": "am", "plugin": "alertmanager", "app": "shop",
        "source": "web.1", "condition": "segfault", "message": BACKTRACE,
        "facts": {"pid": 7}, "first_seen": 1795996800.0, "last_seen": 1795996800.5,
        "count": 1, "suppressed": 0, "created_at": 1795996801.0}
    fields.update(changes)
    return Notification(**fields)


def test_alert_maps_labels_annotations_times_and_link() -> None:
    """Labels, annotations, startsAt/endsAt and generatorURL as the module documents."""
    doc = alert(segfault(), base_url="https://collector.example.com/",
                now=1795996801.0)
    assert doc["labels"] == {"alertname": "am", "app": "shop", "source": "web.1",
                             "condition": "segfault", "severity": "critical"}
    assert doc["annotations"] == {
        "summary": "segfault in shop/web.1: !!! uWSGI process 7 got Segmentation Fault !!!",
        "message": BACKTRACE}
    assert doc["startsAt"] == "2026-11-30T00:00:00.000Z"
    assert doc["endsAt"] == "2026-11-30T00:05:01.000Z"  # the attempt + 5 minutes
    link = urlsplit(doc["generatorURL"])
    assert (link.scheme, link.netloc, link.path) == ("https", "collector.example.com",
                                                     "/v1/logs")
    assert parse_qs(link.query) == {"app": ["shop"], "source": ["web.1"],
                                    "since": ["1795996740.000"], "until": ["1795996805.500"]}


def test_alert_options_and_a_late_delivery_still_firing() -> None:
    """severity and resolve apply; an attempt long after the event still ends in the
    future; an empty source is left out of the labels and the link."""
    doc = alert(segfault(source=""), severity="warning", resolve=60.0,
                base_url="http://127.0.0.1:8080", now=1796000400.0)
    assert doc["labels"]["severity"] == "warning"
    assert "source" not in doc["labels"]
    assert doc["endsAt"] == "2026-11-30T01:01:00.000Z"
    assert "source" not in parse_qs(urlsplit(doc["generatorURL"]).query)
    assert doc["annotations"]["summary"].startswith("segfault in shop: ")


def test_message_is_cut_with_a_note_and_held_back_repeats_are_told() -> None:
    """A long message is cut to message_size characters saying how long it was; lines
    alarm-freq held back are noted as in the other notifiers."""
    long = "x" * 10_000
    message = alert(segfault(message=long), base_url="http://h", now=0.0)["annotations"][
        "message"]
    assert len(message) == MESSAGE_SIZE
    assert message.endswith("[cut: 10000 characters in all]")
    small = alert(segfault(message=long, suppressed=2), base_url="http://h",
                  message_size=100, now=0.0)["annotations"]
    assert len(small["message"]) == 100
    assert len(small["summary"]) == 200
    noted = alert(segfault(suppressed=2), base_url="http://h", now=0.0)["annotations"]
    assert "2 earlier messages" in noted["message"]
    assert cut("abc", 3) == "abc"
    assert len(cut("abcdef", 2)) == 2


def test_alerts_url_and_api_url() -> None:
    """The API path is added once; a path prefix is kept; the API's address as a link."""
    assert alerts_url("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert alerts_url("http://am:9093/am/") == "http://am:9093/am/api/v2/alerts"
    assert alerts_url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"
    assert api_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert api_url("::1", 8080) == "http://[::1]:8080"
    assert api_url("0.0.0.0", 80) == f"http://{socket.gethostname()}:80"


@pytest.mark.parametrize(("arg", "words"), [
    ("http://am:9093", None),
    ("https://am:9093;severity=page;resolve_timeout=10m;url=https://c.example.com;"
     "message_size=500;timeout=3;conn_timeout=1;ssl_insecure=1", None),
    ("am:9093", "http(s)://"),
    ("http://am:9093;colour=red", "unknown option 'colour'"),
    ("http://am:9093;severity=", "severity"),
    ("http://am:9093;resolve_timeout=soon", "resolve_timeout"),
    ("http://am:9093;resolve_timeout=0", "resolve_timeout"),
    ("http://am:9093;message_size=0", "message_size"),
    ("http://am:9093;message_size=lots", "message_size"),
    ("http://am:9093;url=collector:8080", "url"),
    ("http://am:9093;timeout=-1", "timeout"),
])
def test_check_options(arg: str, words: str | None) -> None:
    """Every option is checked for form; a good argument has no problem."""
    problem = check(arg)
    if words is None:
        assert problem is None
    else:
        assert problem is not None
        assert words in problem


def test_config_error_names_file_line_and_key(tmp_path: Path) -> None:
    """A bad alertmanager: alarm stops the config load at its file, line and key."""
    path = tmp_path / "collector.ini"
    path.write_text("[app:shop]\nalarm = page cmd:/bin/true\n"
                    "alarm = am alertmanager:http://am:9093;resolve_timeout=never\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.location == Location(str(path), 3, "alarm")
    assert "resolve_timeout" in caught.value.message


@pytest.fixture
async def fake_am() -> AsyncIterator[Receiver]:
    """A loopback HTTP server at /api/v2/alerts answering the given statuses in turn (a
    real Alertmanager runs in tests/e2e/test_alertmanager.py)."""
    server = Receiver("/api/v2/alerts")
    await server.start()
    yield server
    await server.stop()


async def test_send_posts_one_alert_and_maps_failures(
        fake_am: Receiver, session: aiohttp.ClientSession) -> None:
    """One POST of a one-alert list; 429 and 5xx and a refused connection are retryable,
    another 4xx is permanent."""
    notifier = AlertmanagerNotifier(f"http://127.0.0.1:{fake_am.port};severity=page",
                                    session, 5.0, "http://127.0.0.1:8080")
    fake_am.statuses = [200]  # what Alertmanager answers to an accepted alert
    assert await notifier.send(segfault()) == "HTTP 200"
    (request,) = fake_am.requests
    body = json.loads(request.body)
    assert len(body) == 1
    assert body[0]["labels"]["severity"] == "page"
    assert body[0]["generatorURL"].startswith("http://127.0.0.1:8080/v1/logs?")
    fake_am.statuses = [429, 503, 400]
    for permanent in (False, False, True):
        with pytest.raises(NotifierError) as failed:
            await notifier.send(segfault())
        assert failed.value.permanent is permanent
    down = AlertmanagerNotifier(f"http://127.0.0.1:{free_port()}", session, 2.0, "http://h")
    with pytest.raises(NotifierError) as refused:
        await down.send(segfault())
    assert not refused.value.permanent
