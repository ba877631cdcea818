"""Notifiers against real receivers on loopback: a signed webhook, alarm_curl's HTTP POST,
mail through a real SMTP server, and the log stream."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from alarms.errors import NotifierError
from alarms.notification import Notification, new_id
from alarms.notifiers.base import Services
from alarms.notifiers.curl import CurlHttpNotifier, parse
from alarms.notifiers.log import LogNotifier
from alarms.notifiers.mail import MailNotifier, parse_mail
from alarms.notifiers.webhook import WebhookNotifier
from alarms.options import parse_target
from collector.record import Record
from tests.support.net import free_port
from tests.support.smtp import SmtpServer
from tests.support.tls import server_context
from tests.support.webhook import Received, WebhookServer, verify_signature
from tests.unit.alarm_support import Receiver

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real aiosmtpd server on loopback."""
    server = SmtpServer().start()
    yield server
    server.stop()


def segfault() -> Notification:
    """A segfault notification with context, as the engine makes it."""
    return Notification(
        id=new_id(), alarm="hook", plugin="webhook", app="shop", source="web.1",
        condition="segfault",
        message="!!! uWSGI process 7 got Segmentation Fault !!!\n*** backtrace of 7 ***\n"
                "*** end of backtrace ***",
        facts={"pid": 7, "complete": True}, first_seen=100.0, last_seen=100.5, count=1,
        suppressed=3, context=["GET /a 200", "GET /segfault"], created_at=101.0)


async def test_webhook_is_signed_per_standard_webhooks(receiver: Receiver,
                                                      session: aiohttp.ClientSession) -> None:
    """The signature verifies with an independent HMAC over `id.timestamp.body`, and the
    JSON document carries every field the README documents."""
    notification = segfault()
    outcome = await WebhookNotifier(f"{receiver.url};secret={SECRET}", session, 5.0).send(
        notification)
    assert outcome == "HTTP 204"
    (request,) = receiver.requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["webhook-id"] == notification.id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body
    expected = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    doc = json.loads(request.body)
    assert doc == {"id": notification.id, "type": "uwsgi.alarm", "alarm": "hook",
                   "app": "shop", "source": "web.1", "condition": "segfault",
                   "message": notification.message, "facts": {"pid": 7, "complete": True},
                   "first_seen": 100.0, "last_seen": 100.5, "count": 1, "suppressed": 3,
                   "status": "firing", "group": "", "alert": ""}


async def test_unsigned_webhook_and_http_failures(receiver: Receiver,
                                                  session: aiohttp.ClientSession) -> None:
    """Without a secret there is no signature; 5xx is worth a retry, 4xx is permanent,
    a refused connection is a retryable failure."""
    notifier = WebhookNotifier(receiver.url, session, 5.0)
    await notifier.send(segfault())
    assert "webhook-signature" not in {k.lower() for k in receiver.requests[0].headers}
    receiver.statuses = [503, 400]
    with pytest.raises(NotifierError) as retryable:
        await notifier.send(segfault())
    assert not retryable.value.permanent
    with pytest.raises(NotifierError) as permanent:
        await notifier.send(segfault())
    assert permanent.value.permanent
    with pytest.raises(NotifierError) as refused:
        await WebhookNotifier(f"http://127.0.0.1:{free_port()}/x", session, 2.0).send(
            segfault())
    assert not refused.value.permanent


async def test_curl_http_posts_the_plain_message(receiver: Receiver,
                                                 session: aiohttp.ClientSession) -> None:
    """alarm_curl with an http URL sends the message itself as the body, with basic auth
    and the method it is told."""
    notification = segfault()
    target = parse(f"{receiver.url};auth_user=ops;auth_pass=s3cret;method=PUT;timeout=5")
    assert await CurlHttpNotifier(target, session, 30.0).send(notification) == "HTTP 204"
    (request,) = receiver.requests
    assert request.method == "PUT"
    assert request.body.decode() == notification.text()
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(
        b"ops:s3cret").decode()


async def test_mail_reaches_a_real_smtp_server(smtp: SmtpServer) -> None:
    """mail: with alarm_curl's options: the envelope and headers, then the message, the
    note of suppressed repeats, and the source's lines before it as context."""
    target = parse_target(f"smtp://127.0.0.1:{smtp.port};mail_to=ops@example.com, "
                          "dev@example.com;mail_from=collector@example.com;"
                          "subject=[shop] alarm", frozenset(
                              {"mail_to", "mail_from", "subject"}))
    assert not isinstance(target, str)
    config = parse_mail(target)
    assert not isinstance(config, str)
    notification = segfault()
    assert await MailNotifier(config, 10.0).send(notification) == "mail to 2"
    (mail,) = smtp.mails
    assert mail.mail_from == "collector@example.com"
    assert mail.rcpt_tos == ("ops@example.com", "dev@example.com")
    assert mail.message["Subject"] == "[shop] alarm"
    assert mail.message["X-Alarm-Id"] == notification.id
    body = mail.body
    assert body.startswith(notification.message)
    assert "3 earlier messages to this alarm were suppressed" in body
    assert body.index("GET /a 200") < body.index("GET /segfault")


async def test_mail_over_smtps(tmp_path: Path) -> None:
    """smtps:// speaks TLS from the first byte; `ssl_insecure=1` accepts the server's
    self-signed certificate (options take a value, as in alarm_curl), and without it the
    failure says the certificate is the problem."""
    server = SmtpServer(tls=server_context(tmp_path)).start()
    try:
        for options, delivered in (("ssl_insecure=1", True), ("", False)):
            target = parse_target(f"smtps://127.0.0.1:{server.port};mail_to=ops@example.com;"
                                  f"{options}", frozenset({"mail_to", "ssl_insecure"}))
            assert not isinstance(target, str)
            config = parse_mail(target)
            assert not isinstance(config, str)
            notifier = MailNotifier(config, 10.0)
            if delivered:
                assert await notifier.send(segfault()) == "mail to 1"
            else:
                with pytest.raises(NotifierError, match=r"(?i)certificate"):
                    await notifier.send(segfault())
        assert len(server.mails) == 1
        assert server.mails[0].body.startswith("!!! uWSGI process 7")
    finally:
        server.stop()


async def test_mail_to_a_server_that_is_down_is_retryable() -> None:
    """A refused SMTP connection is a failure to try again, not a dead letter."""
    target = parse_target(f"smtp://127.0.0.1:{free_port()};mail_to=a@example.com",
                          frozenset({"mail_to"}))
    assert not isinstance(target, str)
    config = parse_mail(target)
    assert not isinstance(config, str)
    with pytest.raises(NotifierError) as caught:
        await MailNotifier(config, 2.0).send(segfault())
    assert not caught.value.permanent


async def test_log_writes_alarm_records_into_the_apps_stream() -> None:
    """log: publishes each line of the message as an `alarm` record of the app and source,
    starting `[uwsgi-alarm` so that no rule can fire on it; a full store is a failure."""
    published: list[list[Record]] = []
    accept = [True]

    def publish(records: list[Record]) -> bool:
        published.append(records)
        return accept[0]

    notifier = LogNotifier("oncall", Services(publish=publish, next_ids=lambda n: 500))
    assert await notifier.send(segfault()) == "4 lines"
    (records,) = published
    assert [r.id for r in records] == [500, 501, 502, 503]
    assert records[0].line == ("[uwsgi-alarm] ALARM: oncall !!! uWSGI process 7 got "
                               "Segmentation Fault !!!")
    assert all(r.line.startswith("[uwsgi-alarm") for r in records)
    assert {(r.app, r.source, r.kind) for r in records} == {("shop", "web.1", "alarm")}
    accept[0] = False
    with pytest.raises(NotifierError, match="full"):
        await notifier.send(segfault())


async def recorded(server: WebhookServer, count: int) -> list[Received]:
    """The server's requests once there are `count` (it records each just after
    answering it); bounded wait."""
    for _ in range(500):
        if len(server.requests) >= count:
            break
        await asyncio.sleep(0.01)
    return server.requests


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_followed_with_the_same_body_and_signature(
        status: int, new_webhook: Callable[..., WebhookServer],
        session: aiohttp.ClientSession) -> None:
    """A 3xx is not a delivery: the request is sent again, same method, body and signed
    headers, to where the redirect points on the same host; the outcome names it."""
    server = new_webhook()
    server.redirects["/old"] = (status, "/new")
    notification = segfault()
    outcome = await WebhookNotifier(f"{server.url}/old;secret={SECRET}", session, 5.0).send(
        notification)
    assert outcome == f"HTTP 200 from {server.url}/new after 1 redirect(s)"
    first, second = await recorded(server, 2)
    assert (first.path, first.status, second.path, second.status) == (
        "/old", status, "/new", 200)
    assert second.method == "POST"
    assert second.body == first.body
    assert second.json()["id"] == notification.id
    assert verify_signature(SECRET, second)


async def test_a_redirect_from_http_to_https_on_the_same_host_is_followed(
        tmp_path: Path, new_webhook: Callable[..., WebhookServer],
        session: aiohttp.ClientSession) -> None:
    """The usual "moved to TLS" redirect: http://HOST/x to https://HOST:PORT/x delivers
    (over TLS, the body intact) rather than losing the alarm."""
    secure = new_webhook(tls=server_context(tmp_path))
    plain = new_webhook()
    plain.redirects["/hook"] = (308, f"{secure.url}/hook")
    target = parse(f"{plain.url}/hook;ssl_insecure=1")
    notification = segfault()
    assert await CurlHttpNotifier(target, session, 5.0).send(notification) == (
        f"HTTP 200 from {secure.url}/hook after 1 redirect(s)")
    (request,) = await recorded(secure, 1)
    assert request.body.decode() == notification.text()


@pytest.mark.parametrize(("status", "location", "error"), [
    (301, "http://localhost:{port}/new", "refused: redirects are followed only to the same "
                                         "host"),
    (308, "https://example.invalid/new", "refused"),
    (303, "/new", "HTTP 303 from http://127.0.0.1:{port}/old: only redirects 301, 302, 307 "
                  "and 308 are followed"),
    (302, "/old", "more than 5 redirects"),
    (307, "", "without a Location"),
])
async def test_a_redirect_not_followed_is_a_permanent_failure_saying_why(
        status: int, location: str, error: str, new_webhook: Callable[..., WebhookServer],
        session: aiohttp.ClientSession) -> None:
    """Another host, another scheme, 303, a loop or no Location: a permanent failure
    (the dead letter's last_error says why), never a delivery."""
    server = new_webhook()
    server.redirects["/old"] = (status, location.format(port=server.port))
    with pytest.raises(NotifierError) as caught:
        await WebhookNotifier(f"{server.url}/old", session, 5.0).send(segfault())
    assert caught.value.permanent
    assert error.format(port=server.port) in str(caught.value)
    assert all(r.path == "/old" for r in server.requests)
