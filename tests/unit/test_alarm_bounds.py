"""The alarm state that senders control stays within its bounds under a flood of distinct
sources and messages, and what is evicted is counted (and, where it is an alarm, sent or
kept rather than lost)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from structlog.testing import capture_logs

from alarms.bounds import DEFAULT, Bounds
from alarms.delivery import Dispatcher
from alarms.engine import AlarmEngine
from alarms.metrics import families
from alarms.notification import Notification, new_id
from alarms.notifiers.webhook import WebhookNotifier
from alarms.outbox.sqlite import SqliteOutbox
from alarms.spec import RetryPolicy
from tests.unit.alarm_support import record, rules_from
from tests.unit.test_alarm_delivery import settle

RULES = ("alarm = page cmd:true\nalarm-segfault = page\nalarm-silence = page 60 ^s\n"
         "log-alarm = page boom\n")


def segfault_line(pid: int) -> str:
    """uWSGI's segfault line for `pid`."""
    return f"!!! uWSGI process {pid} got Segmentation Fault !!!"


def test_a_flood_of_distinct_sources_levels_off_at_the_bounds() -> None:
    """200,000 sources, each logging one segfault line (a new context, silence entry,
    regex-match cache entry and backtrace assembly each; the evicted assemblies become
    alarms, each a new anti-storm state): every structure ends at its default bound and
    every eviction is counted."""
    fired = [0]

    def sink(_: Notification) -> None:
        fired[0] += 1

    engine = AlarmEngine([rules_from(RULES)], sink, clock=lambda: 1000.0)
    total = 200_000
    for start in range(0, total, 1000):
        engine.consume([record(segfault_line(i), 1000.0 + i / 1000, source=f"s{i}")
                        for i in range(start, start + 1000)])
    sources, storms = DEFAULT.sources, DEFAULT.storms
    assert engine.sizes() == {"context": sources, "silence": sources,
                              "silence_match": sources, "segfault": sources,
                              "storm": storms}
    assert fired[0] == total - sources  # each evicted assembly was sent, none lost
    assert engine.evictions.counts == {
        "context": total - sources, "silence": total - sources,
        "silence_match": total - sources, "segfault": total - sources,
        "storm": fired[0] - storms}


def test_an_evicted_backtrace_is_sent_with_what_it_has() -> None:
    """When more sources are assembling a backtrace than the bound, the oldest assembly is
    sent at once, marked incomplete, rather than forgotten; the others complete."""
    fired: list[Notification] = []
    engine = AlarmEngine([rules_from(RULES)], fired.append, clock=lambda: 1000.0,
                         bounds=Bounds(sources=2))
    engine.consume([record(segfault_line(1), 1000.0, source="s1"),
                    record(segfault_line(2), 1000.1, source="s2"),
                    record(segfault_line(3), 1000.2, source="s3")])
    (evicted,) = fired
    assert (evicted.source, evicted.condition) == ("s1", "segfault")
    assert evicted.message == f"{segfault_line(1)}\n(no backtrace received)"
    assert evicted.facts["complete"] is False
    engine.consume([record("*** backtrace of 3 ***\n", 1000.3, source="s3"),
                    record("*** end of backtrace ***", 1000.3, source="s3")])
    assert [n.source for n in fired] == ["s1", "s3"]
    assert fired[1].facts["complete"] is True
    assert engine.evictions.counts["segfault"] == 1


def test_a_source_that_keeps_logging_is_not_evicted_from_the_silence_watch() -> None:
    """The silence watch forgets the source that logged least recently: one that keeps
    logging through a flood of one-line sources still raises its silence alarm."""
    fired: list[Notification] = []
    engine = AlarmEngine([rules_from(RULES)], fired.append, clock=lambda: 1000.0,
                         bounds=Bounds(sources=10))
    for i in range(100):
        engine.consume([record("hi", 1000.0 + i / 100, source="s.steady"),
                        record("hi", 1000.0 + i / 100, source=f"s{i}")])
    engine.tick(1100.5)
    silent = {n.source for n in fired if n.condition == "silence"}
    assert "s.steady" in silent
    assert len(silent) == 10
    assert engine.evictions.counts["silence"] == 100 + 1 - 10


def hooked(i: int) -> Notification:
    """The i-th notification for alarm `hook` of app `shop`."""
    return Notification(id=new_id(), alarm="hook", plugin="webhook", app="shop",
                        source=f"s{i}", condition="log", message=f"m{i}", created_at=1.0 + i)


async def test_pending_alarms_past_the_bound_become_dead_letters_and_those_are_trimmed(
        tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """With the receiver down and long backoffs, 100 alarms cannot all wait: past the
    pending bound the oldest become dead letters (kept in the outbox, saying why); past
    the dead-letter bound the oldest of those are deleted, counted and logged by id."""
    outbox = SqliteOutbox(tmp_path / "alarms.db")
    policy = RetryPolicy(attempts=100, backoff=60.0, max_backoff=60.0, timeout=5.0,
                         concurrency=1)
    # Port 1 on loopback: nothing listens there, so every attempt is refused at once.
    dispatcher = Dispatcher(outbox, {("shop", "hook"): WebhookNotifier(
        "http://127.0.0.1:1/hook", session, 2.0)}, {"shop": policy},
        bounds=Bounds(pending=20, dead_letters=30))
    dispatcher.start(await outbox.open())
    try:
        sent = [hooked(i) for i in range(100)]
        for start in range(0, 100, 10):
            for notification in sent[start:start + 10]:
                dispatcher.submit(notification)
            await settle(lambda: not dispatcher.sizes()["incoming"])
        await settle(lambda: dispatcher.evictions.counts["pending"] == 80, within=60.0)
        assert dispatcher.sizes()["pending"] == 20
        dead = await outbox.recent(state="dead", limit=1000)
        assert len(dead) == 80
        assert all((e.last_error or "").startswith(
            "evicted: more than 20 alarms were waiting") for e in dead)
        pending = await outbox.recent(state="pending", limit=1000)
        assert {e.id for e in pending} | {e.id for e in dead} == {n.id for n in sent}
        by_age = sorted(dead, key=lambda e: e.notification.created_at)
        with capture_logs() as logs:
            await dispatcher.trim_dead_letters()
        kept = await outbox.recent(state="dead", limit=1000)
        assert {e.id for e in kept} == {e.id for e in by_age[50:]}
        assert dispatcher.sizes()["dead_letters"] == 30
        assert dispatcher.evictions.counts["dead_letters"] == 50
        (logged,) = [e for e in logs if e["event"] == "alarm_dead_letters_evicted"]
        assert (logged["count"], logged["ids"], logged["more"]) == (
            50, [e.id for e in by_age[:20]], 30)
    finally:
        await dispatcher.stop(grace=0.1)
        await outbox.close()


async def test_dead_letters_older_than_the_age_bound_are_deleted(tmp_path: Path) -> None:
    """The outbox deletes dead letters last updated before the cutoff, whatever their
    number, and reports the ids and what is left."""
    outbox = SqliteOutbox(tmp_path / "alarms.db")
    await outbox.open()
    items = [hooked(i) for i in range(4)]
    await outbox.add(items, 10.0)
    entries = {e.id: e for e in await outbox.recent()}
    for i, item in enumerate(items[:3]):
        entry = entries[item.id]
        entry.state, entry.updated_at = "dead", 100.0 + i
    await outbox.save_many([entries[item.id] for item in items[:3]])
    assert await outbox.trim_dead(10, 101.5) == ([items[0].id, items[1].id], 1)
    assert await outbox.trim_dead(0, 0.0) == ([items[2].id], 0)
    assert [e.id for e in await outbox.recent()] == [items[3].id]
    await outbox.close()


async def test_waiting_to_be_written_is_bounded_while_the_outbox_cannot_be_written(
        tmp_path: Path) -> None:
    """While the outbox refuses writes, fired notifications wait in memory: at most the
    bound, the newest kept, the dropped ones counted."""
    outbox = SqliteOutbox(tmp_path / "alarms.db")  # never opened: every write fails
    dispatcher = Dispatcher(outbox, {}, {}, bounds=Bounds(incoming=10))
    dispatcher.start([])
    sent = [hooked(i) for i in range(50)]
    for notification in sent:
        dispatcher.submit(notification)
    await asyncio.sleep(0.1)
    assert dispatcher.sizes()["incoming"] == 10
    assert dispatcher.evictions.counts["incoming"] == 40
    assert dispatcher.errors["outbox_write"] >= 1
    await dispatcher.stop(grace=0.1)


async def test_evictions_and_sizes_are_in_the_metrics(tmp_path: Path) -> None:
    """/metrics carries evictions per structure and each structure's size."""
    engine = AlarmEngine([rules_from(RULES)], lambda _: None, clock=lambda: 1000.0,
                         bounds=Bounds(sources=3))
    engine.consume([record(segfault_line(i), 1000.0, source=f"s{i}") for i in range(5)])
    dispatcher = Dispatcher(SqliteOutbox(tmp_path / "alarms.db"), {}, {})
    # prometheus-client names a counter family without its `_total` suffix.
    by_name = {f.name: f for f in families(engine, dispatcher)}
    evicted = {s.labels["structure"]: s.value
               for s in by_name["collector_alarms_state_evicted"].samples}
    assert evicted == {"context": 2, "segfault": 2, "silence": 2, "silence_match": 2}
    sizes = {s.labels["structure"]: s.value
             for s in by_name["collector_alarms_state_size"].samples}
    assert sizes == {"context": 3, "segfault": 3, "silence": 3, "silence_match": 3,
                     "storm": 2, "incoming": 0, "pending": 0}
