"""What each notifier says of a resolved notification: the mail's subject and body, the
command's environment, the log line, and the Alertmanager alert (same labels, endsAt when
it resolved, re-post intervals)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alarms.notification import Notification, alert_key, group_key, new_id
from alarms.notifiers.alertmanager import alert, check, repost_every
from alarms.notifiers.base import Services
from alarms.notifiers.cmd import CmdNotifier
from alarms.notifiers.log import LogNotifier
from alarms.notifiers.mail import MailNotifier, parse_mail
from alarms.options import parse_target
from collector.record import Record
from tests.support.smtp import SmtpServer

FIRST = 1795996800.0  # 2026-11-30T00:00:00Z


def backlog(status: str = "firing", **changes: Any) -> Notification:
    """A backlog notification of shop/web.1 as the engine makes it."""
    fields: dict[str, Any] = {
        "id": new_id(), "alarm": "page", "plugin": "cmd", "app": "shop",
        "source": "web.1", "condition": "backlog",
        "message": 'listen queue of socket "127.0.0.1:9000" (fd: 3) full !!! (101/100)',
        "first_seen": FIRST, "last_seen": FIRST + 2, "created_at": FIRST + 2,
        "status": status, "group": group_key("shop", "page", "backlog"),
        "alert": alert_key("shop", "page", "backlog", "web.1", "127.0.0.1:9000 3")}
    if status == "resolved":
        fields.update(message='listen queue of socket "127.0.0.1:9000" (fd: 3) not '
                      "reported full for 30 s", last_seen=FIRST + 32)
    fields.update(changes)
    return Notification(**fields)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real aiosmtpd server on loopback."""
    server = SmtpServer().start()
    yield server
    server.stop()


async def test_mail_subject_and_body_say_resolved(smtp: SmtpServer) -> None:
    """A resolved notification's subject gets `[RESOLVED] ` before the configured one and
    its body says so first; a firing one's subject is unchanged."""
    target = parse_target(f"smtp://127.0.0.1:{smtp.port};mail_to=ops@example.com;"
                          "subject=[shop] alarm", frozenset({"mail_to", "subject"}))
    assert not isinstance(target, str)
    config = parse_mail(target)
    assert not isinstance(config, str)
    notifier = MailNotifier(config, 10.0)
    await notifier.send(backlog())
    await notifier.send(backlog("resolved"))
    firing, resolved = smtp.mails
    assert firing.message["Subject"] == "[shop] alarm"
    assert resolved.message["Subject"] == "[RESOLVED] [shop] alarm"
    assert resolved.body.startswith("RESOLVED: the backlog condition of alarm page has "
                                    "cleared.")
    assert "not reported full for 30 s" in resolved.body
    assert "RESOLVED" not in firing.body


async def test_cmd_environment_carries_status_group_and_alert(tmp_path: Path) -> None:
    """cmd: ALARM_STATUS, ALARM_GROUP and ALARM_ALERT, the same keys for the firing and
    the resolved notification of one alert."""
    out = tmp_path / "env.jsonl"
    script = (f"{sys.executable} -c 'import json,os; print(json.dumps({{k: v for k, v in "
              f"os.environ.items() if k.startswith(\"ALARM_\")}}))' >> {out}")
    notifier = CmdNotifier(script, 10.0)
    assert await notifier.send(backlog()) == "exit 0"
    assert await notifier.send(backlog("resolved")) == "exit 0"
    firing, resolved = (json.loads(line) for line in out.read_text().splitlines())
    assert (firing["ALARM_STATUS"], resolved["ALARM_STATUS"]) == ("firing", "resolved")
    assert firing["ALARM_GROUP"] == resolved["ALARM_GROUP"] == backlog().group
    assert firing["ALARM_ALERT"] == resolved["ALARM_ALERT"] == backlog().alert != ""


async def test_log_line_says_resolved() -> None:
    """log: a resolved notification is written `[uwsgi-alarm] RESOLVED: ...`."""
    published: list[Record] = []

    def publish(records: list[Record]) -> bool:
        published.extend(records)
        return True

    notifier = LogNotifier("", Services(publish=publish, next_ids=lambda n: 1))
    await notifier.send(backlog())
    await notifier.send(backlog("resolved"))
    assert published[0].line.startswith("[uwsgi-alarm] ALARM: listen queue")
    assert published[1].line.startswith("[uwsgi-alarm] RESOLVED: listen queue")


def test_alertmanager_resolved_alert_keeps_labels_and_ends_when_it_resolved() -> None:
    """The resolved alert carries the firing one's labels and startsAt, and endsAt is
    when it resolved (in the past, so Alertmanager shows it resolved), not the attempt
    plus resolve_timeout."""
    now = FIRST + 40
    firing = alert(backlog(), base_url="http://c", now=now)
    resolved = alert(backlog("resolved"), base_url="http://c", now=now)
    assert resolved["labels"] == firing["labels"]
    assert resolved["startsAt"] == firing["startsAt"] == "2026-11-30T00:00:00.000Z"
    assert firing["endsAt"] == "2026-11-30T00:05:40.000Z"
    assert resolved["endsAt"] == "2026-11-30T00:00:32.000Z"
    assert resolved["annotations"]["summary"].startswith("resolved: backlog in shop/web.1")


def test_alertmanager_rate_alert_has_no_source_label() -> None:
    """An alarm-rate alert is the rule's across sources: firing from two sources and
    resolved, its labels are the same (no `source`)."""
    labels = [alert(backlog(condition="rate", source=source), base_url="http://c",
                    now=FIRST)["labels"] for source in ("web.1", "web.2")]
    labels.append(alert(backlog("resolved", condition="rate"), base_url="http://c",
                        now=FIRST)["labels"])
    assert labels[0] == labels[1] == labels[2]
    assert "source" not in labels[0]


def test_alertmanager_repost_interval() -> None:
    """Half resolve_timeout by default, `repost` when given, never under a second; a
    `repost` under that is a config error."""
    assert repost_every("http://am:9093") == 150.0
    assert repost_every("http://am:9093;resolve_timeout=1m") == 30.0
    assert repost_every("http://am:9093;resolve_timeout=1s") == 1.0
    assert repost_every("http://am:9093;repost=2m;resolve_timeout=10m") == 120.0
    assert check("http://am:9093;repost=2m") is None
    assert "repost" in (check("http://am:9093;repost=0.5") or "")
    assert "repost" in (check("http://am:9093;repost=soon") or "")
