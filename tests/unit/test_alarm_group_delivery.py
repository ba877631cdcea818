"""The dispatcher grouping notifications (alarm-group-wait) with the real outbox, the
real webhook notifier and a real HTTP receiver on loopback: one send per group, the
outcome on every member, retries with one id, silences, restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alarms import delivery
from alarms.delivery import Dispatcher
from alarms.grouping import Timing
from alarms.notification import Notification, group_key, new_id
from alarms.notifiers.base import Notifier
from alarms.notifiers.webhook import WebhookNotifier
from alarms.outbox.sqlite import SqliteOutbox
from alarms.spec import RetryPolicy
from tests.unit.alarm_support import Receiver
from tests.unit.test_alarm_delivery import settle

FAST = RetryPolicy(attempts=4, backoff=0.05, max_backoff=0.2, timeout=5.0, concurrency=1)
GROUPING = {"shop": Timing(wait=0.3, interval=0.8)}


def fired(message: str, source: str = "web.1", alarm: str = "hook",
          condition: str = "log") -> Notification:
    """A firing notification of app `shop`, with its group key."""
    return Notification(id=new_id(), alarm=alarm, plugin="webhook", app="shop",
                        source=source, condition=condition, message=message,
                        created_at=time.time(), group=group_key("shop", alarm, condition))


async def start(tmp_path: Path, notifiers: dict[tuple[str, str], Notifier],
                silenced: str | None = None, grouping: dict[str, Timing] | None = None
                ) -> tuple[Dispatcher, SqliteOutbox]:
    """A grouping dispatcher over a (re)opened outbox; `silenced` is a message that an
    active silence (`sil_1`) holds back."""
    outbox = SqliteOutbox(tmp_path / "alarms.db")
    pending = await outbox.open()
    dispatcher = Dispatcher(
        outbox, notifiers, {"shop": FAST}, grouping=grouping or GROUPING,
        silencer=lambda n, now: "sil_1" if silenced and n.message == silenced else None)
    dispatcher.start(pending)
    return dispatcher, outbox


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    """The JSON documents the receiver got, in order."""
    return [json.loads(r.body) for r in receiver.requests]


async def test_a_burst_is_one_send_and_a_later_burst_one_more_after_the_interval(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Five notifications within group-wait arrive as one webhook listing all five; three
    more, sent after it, arrive together as one more, no sooner than the interval after
    the first send. Every member entry is delivered, naming the send that carried it."""
    dispatcher, outbox = await start(
        tmp_path, {("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)})
    burst = [fired(f"GET /{i} 500", source=f"web.{i % 2}") for i in range(5)]
    for notification in burst:
        dispatcher.submit(notification)
    await settle(lambda: len(receiver.requests) == 1)
    first_at = time.time()
    later = [fired(f"GET /late/{i} 502") for i in range(3)]
    for notification in later:
        dispatcher.submit(notification)
    await settle(lambda: len(receiver.requests) == 2)
    second_at = time.time()
    first, second = bodies(receiver)
    assert [m["id"] for m in first["members"]] == [n.id for n in burst]
    assert {m["message"] for m in second["members"]} == {n.message for n in later}
    assert first["count"] == 5
    assert second_at - first_at >= 0.8 - 0.35  # the interval, less group-wait's slack
    entries = await outbox.recent(limit=20)
    assert {e.state for e in entries} == {"delivered"}
    assert all(f"grouped: {first['id']}, 5 members" in (e.outcome or "")
               for e in entries if e.id in {n.id for n in burst})
    assert receiver.ids == [first["id"], second["id"]]
    assert dispatcher.figures[("shop", "hook")].delivered == 8
    await dispatcher.stop()
    await outbox.close()


async def test_members_are_stored_due_at_their_group_time(
        tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """Each member goes into the outbox at once, pending, due when its group may be sent
    (group-wait after the first), so a restart keeps the time."""
    dispatcher, outbox = await start(tmp_path, {
        ("shop", "hook"): WebhookNotifier("http://127.0.0.1:1/hook", session, 1.0)})
    before = time.time()
    for i in range(3):
        dispatcher.submit(fired(f"m{i}"))
    await settle(lambda: dispatcher.intake_idle and len(dispatcher.pending_counts()) == 1)
    entries = await outbox.recent(state="pending")
    assert len(entries) == 3
    assert len({e.next_attempt for e in entries}) == 1
    assert before + 0.3 <= entries[0].next_attempt <= time.time() + 0.3
    await dispatcher.stop(grace=0.1)
    await outbox.close()


async def test_a_failed_group_is_retried_together_with_one_id(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A 500 then success: two attempts of the same members with the same webhook-id,
    each member delivered after two attempts with the first error kept."""
    receiver.statuses = [500]
    dispatcher, outbox = await start(
        tmp_path, {("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)})
    for i in range(4):
        dispatcher.submit(fired(f"m{i}"))
    await settle(lambda: dispatcher.figures.get(("shop", "hook")) is not None
                 and dispatcher.figures[("shop", "hook")].delivered == 4)
    assert len(receiver.ids) == 2
    assert receiver.ids[0] == receiver.ids[1]
    assert [len(b["members"]) for b in bodies(receiver)] == [4, 4]
    entries = await outbox.recent()
    assert {(e.state, e.attempts, e.last_error) for e in entries} == {
        ("delivered", 2, "HTTP 500")}
    await dispatcher.stop()
    await outbox.close()


async def test_a_silence_holds_back_only_the_members_it_matches(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Of three members one is silenced (recorded with the silence's id); the other two go
    out as one send."""
    dispatcher, outbox = await start(
        tmp_path, {("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)},
        silenced="quiet")
    items = [fired("a"), fired("quiet"), fired("b")]
    for item in items:
        dispatcher.submit(item)
    await settle(lambda: len(receiver.requests) == 1
                 and not dispatcher.pending_counts())
    (body,) = bodies(receiver)
    assert [m["message"] for m in body["members"]] == ["a", "b"]
    states = {e.notification.message: (e.state, e.outcome) for e in await outbox.recent()}
    assert states["quiet"] == ("silenced", "sil_1")
    assert states["a"][0] == states["b"][0] == "delivered"
    await dispatcher.stop()
    await outbox.close()


async def test_groups_of_different_conditions_and_alarms_are_sent_apart(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """The group is (app, alarm, condition): two conditions make two sends."""
    dispatcher, outbox = await start(
        tmp_path, {("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)})
    for item in [fired("a"), fired("b", condition="rate"), fired("c")]:
        dispatcher.submit(item)
    await settle(lambda: len(receiver.requests) == 2)
    counts = sorted(len(b.get("members", [])) for b in bodies(receiver))
    assert counts == [1, 2]
    await dispatcher.stop()
    await outbox.close()


async def test_pending_members_survive_a_restart_and_go_out_as_one_group(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Members written while the receiver was unreachable and never sent are loaded with
    their times after a restart and sent once, together."""
    first, outbox = await start(tmp_path, {
        ("shop", "hook"): WebhookNotifier("http://127.0.0.1:1/hook", session, 1.0)})
    items = [fired(f"m{i}") for i in range(5)]
    for item in items:
        first.submit(item)
    await settle(lambda: first.intake_idle and bool(first.pending_counts()))
    await first.stop(grace=0.1)
    await outbox.close()

    second, reopened = await start(tmp_path, {
        ("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)})
    await settle(lambda: len(receiver.requests) == 1)
    (body,) = bodies(receiver)
    assert sorted(m["id"] for m in body["members"]) == sorted(i.id for i in items)
    assert {e.state for e in await reopened.recent()} == {"delivered"}
    await second.stop()
    await reopened.close()


async def test_a_group_larger_than_one_send_takes_is_split(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With at most two members to a send, five due together go out as 2 + 2 + 1, each
    member once."""
    monkeypatch.setattr(delivery, "MAX_MEMBERS", 2)
    dispatcher, outbox = await start(
        tmp_path, {("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)})
    items = [fired(f"m{i}") for i in range(5)]
    for item in items:
        dispatcher.submit(item)
    await settle(lambda: len(receiver.requests) == 3)
    sent = [[m["id"] for m in b["members"]] for b in bodies(receiver)]
    assert sorted(len(ids) for ids in sent) == [1, 2, 2]
    assert sorted(i for ids in sent for i in ids) == sorted(i.id for i in items)
    await dispatcher.stop()
    await outbox.close()


async def test_a_permanent_failure_makes_every_member_a_dead_letter_and_retry_regroups(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """A 410 to a group's send: every member is a dead letter after one attempt;
    `retry` brings them back due now, and they go out again as one send."""
    receiver.statuses = [410]
    dispatcher, outbox = await start(
        tmp_path, {("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)})
    items = [fired(f"m{i}") for i in range(3)]
    for item in items:
        dispatcher.submit(item)
    await settle(lambda: dispatcher.figures.get(("shop", "hook")) is not None
                 and dispatcher.figures[("shop", "hook")].dead == 3)
    dead = await outbox.recent(state="dead")
    assert {(e.attempts, e.last_error) for e in dead} == {(1, "HTTP 410")}
    assert {e.id for e in await dispatcher.retry(None)} == {i.id for i in items}
    await settle(lambda: dispatcher.figures[("shop", "hook")].delivered == 3)
    assert [len(b["members"]) for b in bodies(receiver)] == [3, 3]
    assert receiver.ids[0] == receiver.ids[1]
    await dispatcher.stop()
    await outbox.close()


async def test_after_a_restart_a_new_notification_joins_the_members_still_waiting(
        tmp_path: Path, receiver: Receiver, session: aiohttp.ClientSession) -> None:
    """Three members wait (group-wait 3 s) when the dispatcher stops; after the restart a
    fourth of the same group joins their restored time, and all four go out as one."""
    slow = {"shop": Timing(wait=3.0, interval=5.0)}
    hook: dict[tuple[str, str], Notifier] = {
        ("shop", "hook"): WebhookNotifier(receiver.url, session, 5.0)}
    first, outbox = await start(tmp_path, hook, grouping=slow)
    items = [fired(f"m{i}") for i in range(3)]
    for item in items:
        first.submit(item)
    await settle(lambda: first.intake_idle and bool(first.pending_counts()))
    await first.stop(grace=0.1)
    await outbox.close()
    assert receiver.requests == []

    second, reopened = await start(tmp_path, hook, grouping=slow)
    late = fired("m3")
    second.submit(late)
    await settle(lambda: len(receiver.requests) == 1)
    (body,) = bodies(receiver)
    assert sorted(m["id"] for m in body["members"]) == sorted(i.id for i in [*items, late])
    await second.stop()
    await reopened.close()
