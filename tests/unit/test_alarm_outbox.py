"""The outbox's behaviour and the retry schedule.

The behavioural tests take the `make_outbox` fixture: here it makes SQLite outboxes;
tests/e2e/test_alarm_outbox_kv.py runs the same tests with the replicated KV outbox on a
real nats-server.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from alarms.notification import Notification, grouped, new_id
from alarms.outbox.base import Outbox
from alarms.outbox.sqlite import SqliteOutbox
from alarms.retry import next_attempt, retry_delay
from alarms.spec import RetryPolicy

MakeOutbox = Callable[[], Outbox]


@pytest.fixture
def make_outbox(tmp_path: Path) -> MakeOutbox:
    """A factory of outboxes over one store (a SQLite file in tmp_path): each call makes a
    new, unopened instance on it, as a restart does."""
    return lambda: SqliteOutbox(tmp_path / "alarms.db")


def notification(alarm: str = "hook", app: str = "shop", at: float = 1000.0) -> Notification:
    """A notification as the engine makes them."""
    return Notification(id=new_id(), alarm=alarm, plugin="webhook", app=app, source="web.1",
                        condition="log", message="GET / (HTTP/1.1 500)",
                        facts={"regex": ["5\\d\\d"]}, first_seen=at, last_seen=at,
                        created_at=at, context=["before"])


async def test_add_keeps_each_due_time_across_reopening(make_outbox: MakeOutbox) -> None:
    """Notifications added with due times (grouping: when their group may be sent) are
    pending at those times, and come back with them after a restart; without times they
    are due at once."""
    outbox = make_outbox()
    await outbox.open()
    grouped, plain = [notification(at=1.0), notification(at=2.0)], notification(at=3.0)
    await outbox.add(grouped, now=10.0, dues=[20.0, 20.0])
    await outbox.add([plain], now=11.0)
    await outbox.close()
    reopened = make_outbox()
    due = {e.id: (e.next_attempt, e.updated_at) for e in await reopened.open()}
    assert due == {grouped[0].id: (20.0, 10.0), grouped[1].id: (20.0, 10.0),
                   plain.id: (11.0, 11.0)}
    await reopened.close()


async def test_latest_alerts_gives_the_newest_notification_of_each_alert(
        make_outbox: MakeOutbox) -> None:
    """After a restart, `latest_alerts` gives each stateful alert's newest notification
    whatever its state (a resolved one too), members of grouped ones taken apart,
    stateless ones left out, newest first, at most `limit` alerts."""
    outbox = make_outbox()
    await outbox.open()
    first = replace(notification(at=1.0), condition="backlog", alert="alt_a")
    ended = replace(notification(at=2.0), condition="backlog", alert="alt_a",
                    status="resolved")
    other = replace(notification(at=3.0), condition="backlog", alert="alt_b")
    member = replace(notification(at=4.0), condition="backlog", alert="alt_c")
    await outbox.add([first, ended, other, grouped([member]), notification(at=5.0)],
                     now=6.0)
    await outbox.close()
    reopened = make_outbox()
    await reopened.open()
    try:
        latest = await reopened.latest_alerts(10)
        assert [(n.alert, n.status, n.id) for n in latest] == [
            ("alt_c", "firing", member.id), ("alt_b", "firing", other.id),
            ("alt_a", "resolved", ended.id)]
        assert [n.alert for n in await reopened.latest_alerts(2)] == ["alt_c", "alt_b"]
    finally:
        await reopened.close()


async def test_entries_survive_reopening_with_their_state(make_outbox: MakeOutbox) -> None:
    """Pending entries come back from `open` after a close (a restart), in creation order;
    delivered and dead ones do not, but `recent` lists them."""
    outbox = make_outbox()
    assert await outbox.open() == []
    first, second, third = notification(at=1.0), notification(at=2.0), notification(at=3.0)
    await outbox.add([first, second, third], now=10.0)
    pending = {e.id: e for e in await outbox.recent(state="pending")}
    done, dead = pending[first.id], pending[third.id]
    done.state, done.attempts, done.outcome, done.delivered_at = "delivered", 1, "HTTP 204", 11
    await outbox.save(done)
    dead.state, dead.attempts, dead.last_error = "dead", 3, "HTTP 410"
    await outbox.save(dead)
    await outbox.close()

    reopened = make_outbox()
    again = await reopened.open()
    assert [e.id for e in again] == [second.id]
    assert again[0].notification == second
    states = {e.id: (e.state, e.attempts) for e in await reopened.recent()}
    assert states == {first.id: ("delivered", 1), second.id: ("pending", 0),
                      third.id: ("dead", 3)}
    assert [e.id for e in await reopened.recent(state="dead")] == [third.id]
    await reopened.close()


async def test_requeue_moves_dead_letters_back(make_outbox: MakeOutbox) -> None:
    """Dead letters named by id (or all of them) become pending with attempts reset;
    pending and delivered entries are left alone."""
    outbox = make_outbox()
    await outbox.open()
    items = [notification(at=float(i)) for i in range(3)]
    await outbox.add(items, now=5.0)
    for entry in await outbox.recent():
        if entry.id != items[2].id:
            entry.state, entry.attempts = "dead", 4
            await outbox.save(entry)
    moved = await outbox.requeue([items[0].id, items[2].id], now=20.0)
    assert [(e.id, e.state, e.attempts, e.next_attempt) for e in moved] == [
        (items[0].id, "pending", 0, 20.0)]
    rest = await outbox.requeue(None, now=30.0)
    assert [e.id for e in rest] == [items[1].id]
    assert await outbox.requeue([], now=40.0) == []
    assert len(await outbox.recent(state="pending")) == 3
    await outbox.close()


async def test_add_twice_keeps_one_and_prune_forgets_old_deliveries(
        make_outbox: MakeOutbox) -> None:
    """An id is stored once, and `add` names the ids it held already (not to be scheduled
    again); prune drops delivered entries older than the cut only."""
    outbox = make_outbox()
    await outbox.open()
    old, new = notification(at=100.0), notification(at=900.0)
    assert await outbox.add([old, new, old], now=1000.0) == {old.id}
    for entry in await outbox.recent():
        entry.state = "delivered"
        await outbox.save(entry)
    assert await outbox.add([new], now=1001.0) == {new.id}
    assert {e.id: e.state for e in await outbox.recent()}[new.id] == "delivered"
    assert await outbox.prune(before=500.0) == 1
    assert [e.id for e in await outbox.recent()] == [new.id]
    await outbox.close()


def test_backoff_doubles_to_its_ceiling_with_jitter() -> None:
    """Each wait lies in the upper half of a ceiling that doubles up to max_backoff."""
    policy = RetryPolicy(attempts=20, backoff=1.0, max_backoff=60.0)
    rng = random.Random(7)
    for failures in range(1, 15):
        ceiling = min(60.0, 2.0 ** (failures - 1))
        delay = retry_delay(failures, policy, rng.random())
        assert ceiling / 2 <= delay <= ceiling
    assert retry_delay(3, policy, 0.0) == 2.0
    assert retry_delay(30, policy, 0.999999) <= 60.0


def test_dead_after_the_last_attempt_or_a_permanent_failure() -> None:
    """`attempts` tries in all; a permanent failure is dead at once."""
    policy = RetryPolicy(attempts=3, backoff=1.0)
    assert next_attempt(1, False, policy, 100.0, 0.5) == 100.75
    assert next_attempt(2, False, policy, 100.0, 0.0) == 101.0
    assert next_attempt(3, False, policy, 100.0, 0.5) is None
    assert next_attempt(1, True, policy, 100.0, 0.5) is None
