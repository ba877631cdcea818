"""Grouping's pure parts: when a group may be sent (alarms.grouping) and the one
notification a group's members become (notification.grouped)."""

from __future__ import annotations

import json

from alarms.bounds import Evictions
from alarms.grouping import GroupPolicy, Timing, timings
from alarms.notification import Notification, group_key, grouped, new_id
from tests.unit.alarm_support import rules_from

T = Timing(wait=10.0, interval=300.0)


def test_the_first_of_a_burst_waits_group_wait_and_the_rest_join_it() -> None:
    """A new group is due `wait` after its first notification; what arrives meanwhile
    gets the same time, so it goes out in the same send."""
    policy = GroupPolicy()
    assert policy.due("g", T, 100.0) == 110.0
    assert policy.due("g", T, 104.0) == 110.0
    assert policy.due("g", T, 109.9) == 110.0
    assert policy.due("other", T, 105.0) == 115.0


def test_after_a_send_new_notifications_wait_for_the_interval() -> None:
    """After a send at 110, what arrives is due at 110 + interval, batched together, and
    after that send the next batch waits another interval."""
    policy = GroupPolicy()
    policy.due("g", T, 100.0)
    policy.flushed("g", 110.0)
    assert policy.due("g", T, 111.0) == 410.0
    assert policy.due("g", T, 300.0) == 410.0
    policy.flushed("g", 410.0)
    assert policy.due("g", T, 500.0) == 710.0


def test_a_group_with_nothing_new_for_a_whole_interval_ends() -> None:
    """Nothing arrived for more than an interval after the last send: the next
    notification starts a new group and waits `wait` again."""
    policy = GroupPolicy()
    policy.due("g", T, 100.0)
    policy.flushed("g", 110.0)
    assert policy.due("g", T, 410.5) == 420.5
    policy.flushed("g", 420.5)
    assert policy.due("g", T, 720.0) == 720.5  # within the interval: batched


def test_a_zero_wait_sends_the_first_at_once() -> None:
    """group-wait 0 with an interval: the first goes at once, later ones are batched."""
    policy = GroupPolicy()
    timing = Timing(wait=0.0, interval=60.0)
    assert policy.due("g", timing, 5.0) == 5.0
    policy.flushed("g", 5.0)
    assert policy.due("g", timing, 6.0) == 65.0


def test_groups_are_bounded_and_an_evicted_group_starts_again() -> None:
    """At most `limit` groups are kept (least recently used go, counted); an evicted
    group's next notification waits `wait` as a new group's would."""
    evictions = Evictions()
    policy = GroupPolicy(limit=2, evictions=evictions)
    policy.due("a", T, 0.0)
    policy.flushed("a", 10.0)
    policy.due("b", T, 1.0)
    policy.due("c", T, 2.0)
    assert len(policy) == 2
    assert evictions.counts["groups"] == 1
    assert policy.due("a", T, 20.0) == 30.0  # not 10 + 300: "a" was forgotten


def test_a_restart_restores_the_time_waiting_members_join() -> None:
    """Restored from the outbox: an untried member's time is the group's next send (the
    earliest of them); a member being retried marks when the group was last sent."""
    policy = GroupPolicy()
    policy.restored("g", 50.0, attempts=0, updated_at=40.0)
    policy.restored("g", 45.0, attempts=0, updated_at=35.0)
    assert policy.due("g", T, 47.0) == 45.0
    retried = GroupPolicy()
    retried.restored("h", 90.0, attempts=2, updated_at=80.0)
    assert retried.due("h", T, 100.0) == 380.0


def test_timings_name_only_the_apps_that_group() -> None:
    """An app without alarm-group-wait/-interval is left out (today's path)."""
    base = "alarm = hook webhook:http://127.0.0.1:9/hook\nlog-alarm = hook 500\n"
    grouping = rules_from(base + "alarm-group-wait = 10s\n", app="shop")
    plain = rules_from(base, app="blog")
    assert timings([grouping, plain]) == {"shop": Timing(10.0, 300.0)}


def member(source: str, message: str, count: int = 1, at: float = 100.0) -> Notification:
    """A firing notification of the `hook` alarm in `shop`."""
    return Notification(id=new_id(), alarm="hook", plugin="webhook", app="shop",
                        source=source, condition="log", message=message, count=count,
                        first_seen=at, last_seen=at + 1, created_at=at + 1,
                        group=group_key("shop", "hook", "log"))


def test_a_group_becomes_one_notification_listing_every_member() -> None:
    """Counts summed, each member with its id, source, count and message, the message a
    summary then one line per member, and the payload carrying `members`."""
    members = [member("web.1", "GET /a 500", 2, 100.0), member("web.2", "GET /b 503", 3,
                                                               101.0)]
    sent = grouped(members)
    assert sent.count == 5
    assert (sent.first_seen, sent.last_seen) == (100.0, 102.0)
    assert [m["id"] for m in sent.members] == [m.id for m in members]
    assert [(m["source"], m["count"], m["message"]) for m in sent.members] == [
        ("web.1", 2, "GET /a 500"), ("web.2", 3, "GET /b 503")]
    assert sent.message.splitlines() == [
        "2 alarms of log in shop from 2 sources", "- web.1 (x2): GET /a 500",
        "- web.2 (x3): GET /b 503"]
    assert sent.group == members[0].group
    assert sent.status == "firing"
    payload = json.loads(json.dumps(sent.payload()))
    assert len(payload["members"]) == 2
    assert "members" not in members[0].payload()


def test_a_group_id_is_the_same_for_the_same_members_and_differs_otherwise() -> None:
    """A retry of the same members has the same id (webhook-id), whatever the order;
    another set of members has another; the form is a valid outbox key."""
    a, b, c = member("web.1", "x"), member("web.2", "y"), member("web.3", "z")
    assert grouped([a, b]).id == grouped([b, a]).id
    assert grouped([a, b]).id != grouped([a, b, c]).id
    assert grouped([a, b]).id.startswith("msg_")
    assert len(grouped([a, b]).id) == 36


def test_one_member_is_sent_as_itself_and_parts_give_the_members_back() -> None:
    """A group of one keeps its own id and message; `parts()` of a grouped notification
    are the members as notifications (for one alert per member)."""
    a, b = member("web.1", "x", 2), member("web.2", "y")
    alone = grouped([a])
    assert (alone.id, alone.message, len(alone.members)) == (a.id, "x", 1)
    parts = grouped([a, b]).parts()
    assert [(p.id, p.source, p.message, p.count) for p in parts] == [
        (a.id, "web.1", "x", 2), (b.id, "web.2", "y", 1)]
    assert all(not p.members for p in parts)
    assert a.parts() == [a]


def test_a_retry_before_the_next_send_does_not_put_that_send_off() -> None:
    """Members wait for the send at 410; a retry of earlier members at 120 is a send too,
    but what waits for 410 still goes at 410 and new arrivals join it."""
    policy = GroupPolicy()
    policy.due("g", T, 100.0)
    policy.flushed("g", 110.0)
    assert policy.due("g", T, 115.0) == 410.0
    policy.flushed("g", 120.0)  # the retry
    assert policy.due("g", T, 130.0) == 410.0
