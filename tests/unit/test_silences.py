"""Silences: matching, body validation, the registry's file, and the dispatcher holding a
silenced notification back (real outbox, real HTTP receiver on loopback)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from alarms.delivery import Dispatcher
from alarms.notification import Notification, new_id
from alarms.notifiers.webhook import WebhookNotifier
from alarms.outbox.sqlite import SqliteOutbox
from alarms.silence_store import JsonSilenceFile, SilenceRegistry
from alarms.silences import Silence, first_match, parse_body
from alarms.spec import RetryPolicy
from collector.errors import StoreError
from tests.unit.alarm_support import Receiver
from tests.unit.test_alarm_delivery import FAST, settle

NOW = 1_800_000_000.0


def note(app: str = "shop", alarm: str = "hook", source: str = "web.1",
         condition: str = "log", message: str = "GET / (HTTP/1.1 500)") -> Notification:
    """A notification with the given fields."""
    return Notification(id=new_id(), alarm=alarm, plugin="webhook", app=app, source=source,
                        condition=condition, message=message, created_at=NOW)


def silence(**fields: Any) -> Silence:
    """A silence for app shop active for an hour from NOW, with `fields` over that."""
    body = {"app": "shop", "for": "1h", "comment": "deploying", **fields}
    made = parse_body(body, NOW)
    assert isinstance(made, Silence), made
    return made


@pytest.mark.parametrize(("fields", "matching", "other"), [
    ({}, note(), note(app="blog")),
    ({"alarm": "hook"}, note(), note(alarm="mail")),
    ({"condition": "log"}, note(), note(condition="segfault")),
    ({"source": r"^web\.\d+$"}, note(source="web.12"), note(source="worker.1")),
    ({"match": r"HTTP/1\.1 5\d\d"}, note(), note(message="GET / (HTTP/1.1 404)")),
])
def test_each_matcher_selects_what_it_names(fields: dict[str, str], matching: Notification,
                                            other: Notification) -> None:
    """A silence with one matcher (beside app) matches what agrees and not what differs."""
    made = silence(**fields)
    assert made.matches(matching)
    assert not made.matches(other)


def test_all_matchers_must_agree() -> None:
    """Matchers are ANDed: one disagreeing field is enough to let it through."""
    made = silence(alarm="hook", source="web", match="500")
    assert made.matches(note())
    assert not made.matches(note(message="GET / (HTTP/1.1 200)"))
    assert not made.matches(note(source="cron.1"))


def test_active_from_start_to_end_and_not_after_expiry() -> None:
    """Holds from creation until `for` has passed; not at its end, nor once expired."""
    made = silence()
    assert first_match([made], note(), NOW) is made
    assert first_match([made], note(), NOW + 3599.9) is made
    assert first_match([made], note(), NOW + 3600) is None
    assert first_match([made], note(), NOW - 1) is None
    made.expired_at = NOW + 10
    assert first_match([made], note(), NOW + 5) is None


@given(app=st.text(min_size=1, max_size=20).filter(str.strip),
       other=st.text(min_size=1, max_size=20))
def test_app_matcher_is_exact(app: str, other: str) -> None:
    """An app-only silence matches a notification exactly when the app names are equal."""
    made = silence(app=app)
    assert made.matches(note(app=other)) == (app == other)
    assert made.matches(note(app=app))


@pytest.mark.parametrize(("body", "field"), [
    ([], "body"),
    ({"for": "1h", "comment": "x"}, "app"),
    ({"app": "", "for": "1h", "comment": "x"}, "app"),
    ({"app": 3, "for": "1h", "comment": "x"}, "app"),
    ({"app": "shop", "for": "1h"}, "comment"),
    ({"app": "shop", "comment": "x"}, "for"),
    ({"app": "shop", "for": "1h", "until": "2030-01-01T00:00:00Z", "comment": "x"}, "for"),
    ({"app": "shop", "for": "soon", "comment": "x"}, "for"),
    ({"app": "shop", "for": "0s", "comment": "x"}, "for"),
    ({"app": "shop", "for": True, "comment": "x"}, "for"),
    ({"app": "shop", "for": "400d", "comment": "x"}, "for"),
    ({"app": "shop", "until": "yesterday", "comment": "x"}, "until"),
    ({"app": "shop", "until": NOW - 1, "comment": "x"}, "until"),
    ({"app": "shop", "until": float("nan"), "comment": "x"}, "until"),
    ({"app": "shop", "for": "1h", "comment": "x", "source": "(unclosed"}, "source"),
    ({"app": "shop", "for": "1h", "comment": "x", "match": "[z-a]"}, "match"),
    ({"app": "shop", "for": "1h", "comment": "x", "alarm": ["hook"]}, "alarm"),
    ({"app": "shop", "for": "1h", "comment": "x", "owner": "me"}, "owner"),
    ({"app": "shop", "for": "1h", "comment": "x" * 5000}, "comment"),
])
def test_bad_bodies_are_refused_naming_the_field(body: Any, field: str) -> None:
    """Each fault is answered with text starting with the field at fault."""
    problem = parse_body(body, NOW)
    assert isinstance(problem, str)
    assert problem.startswith(f"{field}:"), problem


def test_a_good_body_makes_a_silence() -> None:
    """`for` and `until` both set the end; created_by defaults to unknown."""
    made = parse_body({"app": "shop", "until": "2027-01-15T10:00:00Z", "comment": "x",
                       "created_by": "ana"}, NOW)
    assert isinstance(made, Silence)
    assert made.ends_at == NOW + 7200
    assert (made.created_by, made.starts_at) == ("ana", NOW)
    timed = silence(alarm="hook")
    assert (timed.ends_at, timed.created_by, timed.id[:4]) == (NOW + 3600, "unknown", "sil_")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["app", "for", "until", "comment",
                                                       "source", "match", "alarm", "x"]),
                                      inner, max_size=6), max_leaves=10))
def test_any_json_body_gives_a_silence_or_a_problem(body: Any) -> None:
    """Whatever JSON arrives, parse_body answers (never raises), and a silence it makes
    survives its stored form."""
    made = parse_body(body, NOW)
    if isinstance(made, Silence):
        assert Silence.from_json(json.loads(json.dumps(made.to_json(NOW)))) == made
    else:
        assert isinstance(made, str)
        assert made


async def test_registry_keeps_silences_across_reopen_and_logs(tmp_path: Path) -> None:
    """Added and expired silences are written to the file before the call returns, so a
    new registry over it (a restart) sees them; both steps are logged with who and why."""
    path = tmp_path / "silences.json"
    registry = SilenceRegistry(JsonSilenceFile(path))
    await registry.open()
    kept, ended = silence(alarm="hook"), silence(created_by="bo")
    with capture_logs() as logs:
        await registry.add(kept, NOW)
        await registry.add(ended, NOW)
        assert await registry.expire(ended.id, NOW + 5, "cy") is not None
        assert await registry.expire("sil_nope", NOW, "cy") is None
    events = [(e["event"], e["id"], e["by"], e["comment"]) for e in logs]
    assert events == [("silence_created", kept.id, "unknown", "deploying"),
                      ("silence_created", ended.id, "bo", "deploying"),
                      ("silence_expired", ended.id, "cy", "deploying")]
    assert logs[0]["alarm"] == "hook"

    again = SilenceRegistry(JsonSilenceFile(path))
    await again.open()
    assert [s.id for s in again.listed(NOW + 10)] == [kept.id]
    assert {s.id for s in again.listed(NOW + 10, everything=True)} == {kept.id, ended.id}
    assert again.match(note(), NOW + 10) == kept
    assert again.match(note(alarm="mail"), NOW + 10) is None
    (gone,) = [s for s in again.listed(NOW, everything=True) if s.id == ended.id]
    assert (gone.expired_by, gone.ends_at) == ("cy", NOW + 5)


async def test_a_damaged_file_is_a_store_error(tmp_path: Path) -> None:
    """A file that is not the silences document is refused with its name, not ignored."""
    path = tmp_path / "silences.json"
    path.write_text("{not json")
    with pytest.raises(StoreError, match=r"silences\.json"):
        await SilenceRegistry(JsonSilenceFile(path)).open()


async def test_dispatcher_records_a_silenced_notification_and_sends_it_not(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A notification an active silence matches is saved as `silenced` with the silence's
    id and never reaches the receiver; one it does not match is delivered."""
    made = silence(match="HTTP/1.1 5")
    registry = SilenceRegistry(JsonSilenceFile(tmp_path / "silences.json"))
    await registry.add(made, NOW)

    def silencer(notification: Notification, now: float) -> str | None:
        found = registry.match(notification, NOW)
        return found.id if found is not None else None

    outbox = SqliteOutbox(tmp_path / "alarms.db")
    dispatcher = Dispatcher(outbox, {("shop", "hook"): WebhookNotifier(
        receiver.url, session, 5.0)}, {"shop": FAST}, silencer=silencer)
    dispatcher.start(await outbox.open())
    held, sent = note(), note(message="GET / (HTTP/1.1 404)")
    dispatcher.submit(held)
    dispatcher.submit(sent)
    await settle(lambda: dispatcher.figures.get(("shop", "hook")) is not None
                 and dispatcher.figures[("shop", "hook")].delivered == 1
                 and dispatcher.silenced[("shop", "hook")] == 1)
    assert receiver.ids == [sent.id]
    (entry,) = await outbox.recent("silenced")
    assert (entry.id, entry.outcome, entry.attempts) == (held.id, made.id, 0)
    assert entry.to_json()["silence"] == made.id
    await dispatcher.stop()
    await outbox.close()


async def test_a_silence_made_while_an_alarm_waits_for_a_retry_holds_it(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """The silence is checked at each attempt: an alarm whose first attempt failed, then
    silenced before its retry (at least 0.5 s later), is recorded as silenced, sent once."""
    receiver.statuses = [500]
    holding: list[str] = []
    outbox = SqliteOutbox(tmp_path / "alarms.db")
    slow = RetryPolicy(attempts=4, backoff=1.0, max_backoff=1.0, timeout=5.0,
                       concurrency=1)
    dispatcher = Dispatcher(outbox, {("shop", "hook"): WebhookNotifier(
        receiver.url, session, 5.0)}, {"shop": slow},
        silencer=lambda n, now: holding[0] if holding else None)
    dispatcher.start(await outbox.open())
    waiting = note()
    dispatcher.submit(waiting)
    await settle(lambda: dispatcher.figures.get(("shop", "hook")) is not None
                 and dispatcher.figures[("shop", "hook")].retried == 1)
    holding.append("sil_test")
    await settle(lambda: dispatcher.silenced[("shop", "hook")] == 1)
    assert receiver.ids == [waiting.id]
    (entry,) = await outbox.recent()
    assert (entry.state, entry.outcome, entry.attempts) == ("silenced", "sil_test", 1)
    await dispatcher.stop()
    await outbox.close()
