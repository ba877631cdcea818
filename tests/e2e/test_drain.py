"""Heroku HTTPS drains against a real collector process: POSTs built to Heroku's published
format over real TLS (a throwaway certificate), de-duplication, refusals, alarm-heroku."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import signal
import ssl
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_port, wait_for
from tests.support.tls import server_context
from tests.support.webhook import WebhookServer

pytestmark = pytest.mark.e2e

TOKEN = "drain-token-0123456789abcdef"
# Heroku's documented frames (devcenter "Log Drains"; logplex README.http_drains.md).
STATE = b"<40>1 2012-11-30T06:45:29+00:00 host app web.3 - State changed from starting to up\n"
START = (b"<40>1 2012-11-30T06:45:26+00:00 host app web.3 - Starting process with command "
         b"`bundle exec rackup config.ru -p 24405`\n")
ROUTER = (b'<158>1 2012-11-30T06:45:30+00:00 host heroku router - at=info method=GET '
          b'path="/cart" host=shop.herokuapp.com request_id=aaaa-1 fwd="203.0.113.9" '
          b'dyno=web.3 connect=1ms service=12ms status=200 bytes=1234 protocol=https\n')
H12 = (b'<158>1 2012-11-30T06:46:00+00:00 host heroku router - at=error code=H12 '
       b'desc="Request timeout" method=GET path="/slow" host=shop.herokuapp.com '
       b'request_id=bbbb-2 fwd="203.0.113.9" dyno=web.1 connect=0ms service=30000ms '
       b'status=503 bytes=0 protocol=https\n')


def framed(*messages: bytes) -> bytes:
    """An octet-counted logplex-1 body."""
    return b"".join(str(len(m)).encode() + b" " + m for m in messages)


class Drain:
    """Posts to the collector's drain over HTTPS, as Logplex does."""

    def __init__(self, port: int, cafile: Path) -> None:
        self.port = port
        self.tls = ssl.create_default_context(cafile=str(cafile))

    def post(self, body: bytes | Iterable[bytes], frame_id: str, count: int | None = None,
             user: str = "shop", token: str = TOKEN) -> int:
        """One POST (chunked when `body` is an iterable of chunks); the status answered."""
        auth = base64.b64encode(f"{user}:{token}".encode()).decode()
        sent = {"Content-Type": "application/logplex-1", "Logplex-Frame-Id": frame_id,
                "Logplex-Drain-Token": "d.73ea7440-270a-435a-a0ea-adf50b4e5f5a",
                "User-Agent": "Logplex/v123", "Authorization": f"Basic {auth}"}
        chunked = not isinstance(body, bytes)
        if chunked:
            sent["Transfer-Encoding"] = "chunked"
        if count is not None:
            sent["Logplex-Msg-Count"] = str(count)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls,
                                           timeout=30)
        try:
            # The server may answer (413) and close before the whole body is sent.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
                conn.request("POST", "/drain", body=body, headers=sent, encode_chunked=chunked)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookServer]:
    """The real HTTP receiver alarm-heroku posts to."""
    server = WebhookServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, hook: WebhookServer
          ) -> Iterator[tuple[CollectorProcess, Drain]]:
    """One collector with an HTTPS drain for app `shop` and alarm-heroku on H12."""
    workdir = tmp_path_factory.mktemp("drain")
    server_context(workdir)  # writes cert.pem and key.pem
    port = free_port()
    collector = CollectorProcess(workdir, env={"SHOP_DRAIN_TOKEN": TOKEN}, config=f"""
[listener:heroku]
format = logplex
http = 127.0.0.1:{port}
tls-cert = {workdir / "cert.pem"}
tls-key = {workdir / "key.pem"}
drain = shop:$(SHOP_DRAIN_TOKEN)
max-body = 1M

[app:shop]
alarm = hook webhook:{hook.url}/hook;timeout=2
alarm-heroku = hook H12,crashed
""")
    collector.start()
    yield collector, Drain(port, workdir / "cert.pem")
    collector.close()


def records(collector: CollectorProcess, **params: Any) -> list[dict[str, Any]]:
    """The API's records for app `shop` (and `params`), oldest first."""
    query = urllib.parse.urlencode({"app": "shop", "limit": 1000, **params})
    found: list[dict[str, Any]] = collector.get(f"/v1/logs?{query}")["records"]
    return sorted(found, key=lambda r: r["id"])


def drain_metric(collector: CollectorProcess, result: str) -> float:
    """collector_drain_requests_total for `result`."""
    key = f'collector_drain_requests_total{{listener="heroku",result="{result}"}}'
    return collector.metrics().get(key, 0.0)


def test_documented_frames_are_stored_with_fields(setup: tuple[CollectorProcess, Drain]
                                                  ) -> None:
    """Heroku's example frames and a router line: app from the drain, source from PROCID,
    emitted_at from the frame, the router line's request fields and extras."""
    collector, drain = setup
    assert drain.post(framed(START, STATE, ROUTER), "frame-docs", count=3) == 204
    found = wait_for(lambda: (r if len(r := records(collector, regex="rackup|starting|cart"))
                              >= 3 else None), 20, "the drain's lines")
    assert [(r["source"], r["line"]) for r in found][:2] == [
        ("web.3", "Starting process with command `bundle exec rackup config.ru -p 24405`"),
        ("web.3", "State changed from starting to up")]
    assert found[1]["emitted_at"] == 1354257929.0
    assert found[1]["format"] == "logplex"
    router = found[2]
    assert (router["source"], router["method"], router["path"], router["status"],
            router["msecs"], router["size"]) == ("router", "GET", "/cart", 200, 12.0, 1234)
    assert (router["dyno"], router["connect"], router["request_id"]) == ("web.3", 1.0,
                                                                         "aaaa-1")
    assert [r["line"] for r in records(collector, status=200)] == [router["line"]]


def test_repeated_frame_id_is_stored_once(setup: tuple[CollectorProcess, Drain]) -> None:
    """Logplex's re-sent POST (same frame id) is answered 204 and not stored again."""
    collector, drain = setup
    body = framed(b"<190>1 2012-11-30T06:47:00+00:00 host app web.1 - once-only-line\n")
    assert drain.post(body, "frame-repeat", count=1) == 204
    assert drain.post(body, "frame-repeat", count=1) == 204
    wait_for(lambda: records(collector, regex="once-only-line") or None, 20, "the line")
    assert drain.post(framed(b"<190>1 2012-11-30T06:47:01Z host app web.1 - marker-after\n"),
                      "frame-after", count=1) == 204
    wait_for(lambda: records(collector, regex="marker-after") or None, 20, "the marker")
    assert len(records(collector, regex="once-only-line")) == 1
    assert drain_metric(collector, "duplicate") == 1


def test_wrong_token_is_401_and_nothing_stored(setup: tuple[CollectorProcess, Drain]
                                               ) -> None:
    """A wrong token, or another app's name, is refused and counted; its line is never
    stored; the token is never in the collector's output."""
    collector, drain = setup
    body = framed(b"<190>1 2012-11-30T06:48:00Z host app web.1 - forged-line\n")
    assert drain.post(body, "frame-forged", count=1, token="x" * 28) == 401
    assert drain.post(body, "frame-forged-2", count=1, user="blog") == 401
    assert drain.post(framed(b"<190>1 2012-11-30T06:48:01Z host app web.1 - after-forged\n"),
                      "frame-ok", count=1) == 204
    wait_for(lambda: records(collector, regex="after-forged") or None, 20, "the good line")
    assert records(collector, regex="forged-line") == []
    assert drain_metric(collector, "unauthorized") == 2
    assert TOKEN not in collector.output()


def test_truncated_body_and_count_mismatch_are_refused(setup: tuple[CollectorProcess, Drain]
                                                       ) -> None:
    """A body cut inside a frame is 400 `truncated`; a Logplex-Msg-Count that disagrees
    with the frames is 400 too; neither stores any of its frames."""
    collector, drain = setup
    body = framed(b"<190>1 2012-11-30T06:49:00Z host app web.1 - cut-first\n",
                  b"<190>1 2012-11-30T06:49:00Z host app web.1 - cut-second\n")
    assert drain.post(body[:-10], "frame-cut", count=2) == 400
    assert drain.post(body, "frame-miscount", count=3) == 400
    assert drain.post(framed(b"<190>1 2012-11-30T06:49:01Z host app web.1 - after-cut\n"),
                      "frame-after-cut", count=1) == 204
    wait_for(lambda: records(collector, regex="after-cut") or None, 20, "the good line")
    assert records(collector, regex="cut-first|cut-second") == []
    assert drain_metric(collector, "truncated") == 1
    assert drain_metric(collector, "msg_count_mismatch") == 1
    # Refused, so not remembered: Logplex's retry of the whole body is taken.
    assert drain.post(body, "frame-cut", count=2) == 204


def test_ten_megabyte_body_is_413(setup: tuple[CollectorProcess, Drain]) -> None:
    """A 10 MB body, with its length or chunked, is refused with 413 and counted; the
    listener serves the next POST."""
    collector, drain = setup
    frame = b"<190>1 2012-11-30T06:50:00Z host app web.1 - " + b"x" * 9000 + b"\n"
    body = framed(*[frame] * 1120)
    assert len(body) > 10_000_000
    assert drain.post(body, "frame-big", count=1120) == 413
    chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    assert drain.post(iter(chunks), "frame-big-chunked") == 413
    assert drain_metric(collector, "too_large") == 2
    assert drain.post(framed(b"<190>1 2012-11-30T06:50:01Z host app web.1 - after-big\n"),
                      "frame-after-big", count=1) == 204


def test_h12_from_a_drain_fires_alarm_heroku(setup: tuple[CollectorProcess, Drain],
                                             hook: WebhookServer) -> None:
    """An H12 router line through the drain posts the alarm to the webhook receiver, with
    code, description, path and dyno in its facts."""
    _, drain = setup
    assert drain.post(framed(H12), "frame-h12", count=1) == 204
    (request,) = wait_for(lambda: hook.requests or None, 30, "the alarm-heroku webhook")
    payload = json.loads(request.body)
    assert (payload["alarm"], payload["app"], payload["source"], payload["condition"]) == (
        "hook", "shop", "router", "heroku")
    assert payload["facts"] == {"code": "H12", "desc": "Request timeout", "path": "/slow",
                                "dyno": "web.1"}


def test_reload_rotates_the_token_on_the_same_socket(setup: tuple[CollectorProcess, Drain]
                                                     ) -> None:
    """SIGHUP with a new token (and a new app's drain): the old token is refused, the new
    one and the new app taken, on the same port. Runs last: it changes the config."""
    collector, drain = setup
    rotated = "rotated-token-abcdefghijklmnop"
    collector.config = collector.config.replace(
        "drain = shop:$(SHOP_DRAIN_TOKEN)", f"drain = shop:{rotated}\ndrain = blog:{TOKEN}")
    collector.write_config()
    assert collector.process is not None
    collector.process.send_signal(signal.SIGHUP)
    body = framed(b"<190>1 2012-11-30T06:51:00Z host app web.1 - after-rotation\n")
    wait_for(lambda: drain.post(body, "frame-rotated", count=1, token=rotated) == 204, 20,
             "the reload to take the new token")
    assert drain.post(body, "frame-old-token", count=1) == 401
    assert drain.post(body, "frame-blog", count=1, user="blog") == 204
    found = wait_for(lambda: (r if len(r := records(collector, regex="after-rotation")) >= 1
                              else None), 20, "the line")
    assert len(found) == 1
    blog = collector.get("/v1/logs?app=blog&regex=after-rotation")["records"]
    assert [r["app"] for r in blog] == ["blog"]
