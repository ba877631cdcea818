"""Each notifier with a grouped notification (alarm-group-wait), against real receivers on
loopback: the webhook's `members`, mail's body and subject, cmd's stdin and
ALARM_MEMBERS, and Alertmanager's one alert per member in one POST."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from alarms.notification import Notification, group_key, grouped, new_id
from alarms.notifiers.alertmanager import AlertmanagerNotifier
from alarms.notifiers.cmd import CmdNotifier
from alarms.notifiers.mail import MailNotifier, parse_mail
from alarms.notifiers.webhook import WebhookNotifier
from alarms.options import parse_target
from tests.support.smtp import SmtpServer
from tests.unit.alarm_support import Receiver


def group() -> Notification:
    """Three 5xx lines from two sources, grouped."""
    members = [Notification(id=new_id(), alarm="hook", plugin="webhook", app="shop",
                            source=source, condition="log", message=message, count=count,
                            first_seen=100.0 + i, last_seen=100.5 + i, created_at=101.0 + i,
                            group=group_key("shop", "hook", "log"))
               for i, (source, message, count) in enumerate([
                   ("web.1", "GET /a (HTTP/1.1 500)", 1), ("web.2", "GET /b (HTTP/1.1 502)", 4),
                   ("web.1", "GET /c (HTTP/1.1 503)", 2)])]
    return grouped(members)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real aiosmtpd server on loopback."""
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
async def fake_am() -> AsyncIterator[Receiver]:
    """A loopback HTTP server at Alertmanager's path."""
    server = Receiver("/api/v2/alerts")
    await server.start()
    yield server
    await server.stop()


async def test_webhook_payload_lists_the_members(
        receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """One POST whose `members` give each member's id, source, count and message; the
    webhook-id is the group's id."""
    sent = group()
    await WebhookNotifier(receiver.url, session, 5.0).send(sent)
    (request,) = receiver.requests
    body = json.loads(request.body)
    assert request.headers["webhook-id"] == sent.id
    assert [(m["id"], m["source"], m["count"], m["message"]) for m in body["members"]] == [
        (m["id"], m["source"], m["count"], m["message"]) for m in sent.members]
    assert body["count"] == 7


async def test_mail_lists_each_member_and_says_how_many(smtp: SmtpServer) -> None:
    """The subject says how many alarms; the body has each member's source, count and
    message."""
    target = parse_target(f"smtp://127.0.0.1:{smtp.port};mail_to=ops@example.com;"
                          "subject=[shop] alarm", frozenset({"mail_to", "subject"}))
    assert not isinstance(target, str)
    config = parse_mail(target)
    assert not isinstance(config, str)
    await MailNotifier(config, 10.0).send(group())
    (mail,) = smtp.mails
    assert mail.message["Subject"] == "[shop] alarm (3 alarms)"
    for line in ("- web.1 (x1): GET /a (HTTP/1.1 500)", "- web.2 (x4): GET /b (HTTP/1.1 502)",
                 "- web.1 (x2): GET /c (HTTP/1.1 503)"):
        assert line in mail.body


async def test_cmd_gets_every_message_on_stdin_and_the_member_count(tmp_path: Path) -> None:
    """Standard input carries each member's message; ALARM_MEMBERS says how many."""
    out = tmp_path / "out.json"
    script = (f"{sys.executable} -c 'import json,os,sys; json.dump({{\"stdin\": "
              f"sys.stdin.read(), \"members\": os.environ.get(\"ALARM_MEMBERS\")}}, "
              f"open(\"{out}\", \"w\"))'")
    assert await CmdNotifier(script, 5.0).send(group()) == "exit 0"
    got = json.loads(out.read_text())
    assert got["members"] == "3"
    assert all(f"GET /{p}" in got["stdin"] for p in "abc")


async def test_alertmanager_gets_one_alert_per_member_in_one_post(
        fake_am: Receiver, session: aiohttp.ClientSession) -> None:
    """One POST with three alerts, each with its own source label and message."""
    notifier = AlertmanagerNotifier(f"http://127.0.0.1:{fake_am.port}", session, 5.0,
                                    "http://127.0.0.1:8080")
    fake_am.statuses = [200]
    await notifier.send(group())
    (request,) = fake_am.requests
    alerts = json.loads(request.body)
    assert [(a["labels"]["source"], a["annotations"]["message"]) for a in alerts] == [
        ("web.1", "GET /a (HTTP/1.1 500)"), ("web.2", "GET /b (HTTP/1.1 502)"),
        ("web.1", "GET /c (HTTP/1.1 503)")]
