"""Stateful alerts that survive a restart: an engine restored from the notifications an
outbox holds resolves and repeats the alerts that were firing, as the engine that fired
them would have (each condition; the newest notification of an alert wins; an alert
whose newest is resolved, or whose condition is no longer configured, stays closed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from alarms.bounds import Bounds
from alarms.delivery import Dispatcher
from alarms.engine import AlarmEngine
from alarms.metrics import families
from alarms.notification import Notification, grouped
from alarms.outbox.sqlite import SqliteOutbox
from alarms.restore import latest_per_alert, still_firing
from tests.unit.alarm_support import record, rules_from
from tests.unit.test_alarm_resolve import ALARMS, engine_for, full

BACKLOG = "alarm-backlog = page\nalarm-resolve-after = 30\n"
SILENCE = "alarm-silence = page 60\n"
RATE = "alarm-freq = 0\nalarm-rate = page 2/10 HTTP/1\\.1 5\\d\\d\n"


def restarted(body: str, held: list[Notification]) -> tuple[AlarmEngine, list[Notification],
                                                             int]:
    """A new engine for `body` (the collector after a restart) restored from `held`,
    with what it emits and how many alerts it re-opened."""
    engine, emitted = engine_for(body)
    return engine, emitted, engine.restore(held)


def test_a_backlog_firing_before_a_restart_resolves_after_it() -> None:
    """The queue last reported full at 1002 resolves at 1032 in the restarted engine,
    once, with the firing notification's group, alert and first_seen."""
    before, held = engine_for(BACKLOG)
    before.consume(full(1002.0))
    (firing,) = held
    engine, emitted, count = restarted(BACKLOG, held)
    assert count == 1
    engine.tick(1031.0)
    assert emitted == []
    engine.tick(1033.0)
    (resolved,) = emitted
    assert (resolved.status, resolved.group, resolved.alert, resolved.source) == (
        "resolved", firing.group, firing.alert, "web.1")
    assert resolved.first_seen == 1002.0
    engine.tick(2000.0)
    assert len(emitted) == 1


def test_a_restored_backlog_still_reported_full_waits_for_its_last_report() -> None:
    """A queue reported full again after the restart resolves resolve_after seconds
    after that report, not after the one before the restart."""
    before, held = engine_for(BACKLOG)
    before.consume(full(1000.0))
    engine, emitted, _ = restarted(BACKLOG, held)
    engine.consume(full(1020.0))
    engine.tick(1040.0)
    assert [n.status for n in emitted] == ["firing"]
    engine.tick(1051.0)
    assert [n.status for n in emitted] == ["firing", "resolved"]
    assert emitted[1].alert == held[0].alert


def test_a_silent_source_restored_resolves_on_its_next_line_and_does_not_refire() -> None:
    """A source silent before the restart is not paged again for the same silence; its
    next line resolves it with its last line's time from the firing facts."""
    before, held = engine_for(SILENCE)
    before.consume([record("hi", 1000.0)])
    before.tick(1061.0)
    (firing,) = held
    engine, emitted, count = restarted(SILENCE, held)
    assert count == 1
    engine.consume([record("other source", 1140.0, source="web.2")])
    engine.tick(1150.0)
    assert emitted == []
    engine.consume([record("back", 1170.0)])
    engine.tick(1171.0)
    (resolved,) = emitted
    assert (resolved.status, resolved.alert, resolved.group) == (
        "resolved", firing.alert, firing.group)
    assert resolved.facts["last_seen"] == 1000.0
    assert resolved.facts["silent_for"] == 170.0


def test_a_restored_silence_ignores_lines_older_than_its_last_one() -> None:
    """A replay (cluster takeover) feeds lines from before the silence: they neither
    resolve it nor move its last line back."""
    before, held = engine_for(SILENCE)
    before.consume([record("hi", 1000.0)])
    before.tick(1061.0)
    engine, emitted, _ = restarted(SILENCE, held)
    engine.consume([record("old", 990.0), record("hi", 1000.0)])
    engine.tick(1100.0)
    assert emitted == []
    engine.consume([record("back", 1200.0)])
    engine.tick(1201.0)
    assert [n.status for n in emitted] == ["resolved"]


def test_a_rate_firing_before_a_restart_resolves_a_window_after_it() -> None:
    """The rate's alert (the rule's, across sources) resolves a window after its last
    firing, under that firing's source."""
    before, held = engine_for(RATE)
    before.consume([record("GET / (HTTP/1.1 500)", 1000.0, source="web.2"),
                    record("GET / (HTTP/1.1 500)", 1001.0, source="web.2")])
    (firing,) = held
    engine, emitted, count = restarted(RATE, held)
    assert count == 1
    engine.tick(1010.5)
    assert emitted == []
    engine.tick(1011.0)
    (resolved,) = emitted
    assert (resolved.status, resolved.alert, resolved.source) == (
        "resolved", firing.alert, "web.2")


def test_the_newest_notification_of_an_alert_wins() -> None:
    """Firing, resolved, firing again: re-opened. Firing then resolved: closed. The order
    the notifications come in does not matter (the outbox's is not the log's)."""
    before, held = engine_for(BACKLOG)
    before.consume(full(1000.0))
    before.tick(1031.0)
    assert [n.status for n in held] == ["firing", "resolved"]
    stamped = [replace(n, created_at=t) for n, t in zip(held, (1000.0, 1031.0), strict=True)]
    engine, emitted, count = restarted(BACKLOG, list(reversed(stamped)))
    assert count == 0
    engine.tick(5000.0)
    assert emitted == []
    again = replace(stamped[0], id="again", created_at=1040.0, last_seen=1040.0)
    engine, emitted, count = restarted(BACKLOG, [again, *stamped])
    assert count == 1
    engine.tick(1071.0)
    assert [(n.status, n.alert) for n in emitted] == [("resolved", again.alert)]


def test_unconfigured_alerts_are_not_restored() -> None:
    """An app, alarm or condition no longer configured, or resolve and repeat both off,
    re-opens nothing: nobody could be told it ended."""
    before, held = engine_for(BACKLOG)
    before.consume(full(1000.0))
    for body in ("alarm-silence = page 60\n", "alarm-backlog = hook\n",
                 BACKLOG + "alarm-resolve = false\n"):
        engine, emitted, count = restarted(body, held)
        assert count == 0, body
        engine.tick(5000.0)
        assert emitted == [], body
    other_app = AlarmEngine([rules_from(ALARMS + BACKLOG, app="cart")], lambda _: None)
    assert other_app.restore(held) == 0


def test_members_of_a_grouped_notification_are_restored() -> None:
    """A grouped notification (alarm-group-wait) carries its alerts in its members."""
    before, held = engine_for(BACKLOG)
    before.consume(full(1000.0))
    before.consume(full(1001.0, fd=4))
    engine, emitted, count = restarted(BACKLOG, [grouped(held)])
    assert count == 2
    engine.tick(1032.0)
    assert sorted(n.alert for n in emitted) == sorted(n.alert for n in held)


def test_a_restored_alert_is_repeated_while_firing() -> None:
    """alarm-repeat: a restored alert is sent again `repeat` seconds after it was last
    told (once for repeats missed while the collector was down), marked as a repeat."""
    body = "alarm-backlog = page\nalarm-repeat = 60\nalarm-resolve-after = 1000\n"
    before, held = engine_for(body)
    before.consume(full(1000.0))
    engine, emitted, _ = restarted(body, [replace(held[0], created_at=1000.0)])
    engine.tick(1059.0)
    assert emitted == []
    engine.tick(1200.0)
    (repeat,) = emitted
    assert (repeat.status, repeat.alert, repeat.facts["repeat"]) == (
        "firing", held[0].alert, True)


def test_restore_is_bounded_by_the_alerts_bound() -> None:
    """At most `bounds.alerts` alerts come back, the most recently notified."""
    before, held = engine_for(BACKLOG)
    for fd in range(5):
        before.consume(full(1000.0 + fd, fd=fd))
    stamped = [replace(n, created_at=n.last_seen) for n in held]
    assert [n.facts["fd"] for n in still_firing(stamped, 2)] == [3, 4]
    assert len(latest_per_alert(stamped)) == 5
    engine = AlarmEngine([rules_from(ALARMS + BACKLOG)], lambda _: None,
                         bounds=Bounds(alerts=2))
    assert engine.restore(stamped) == 2


async def test_sqlite_outbox_gives_the_newest_notification_per_alert(
        tmp_path: Path) -> None:
    """`latest_alerts` reads back, across reopening, the newest notification of each
    alert whatever its state, grouped ones taken apart, stateless ones left out."""
    before, held = engine_for(BACKLOG + "log-alarm = hook boom\n")
    before.consume([*full(1000.0), record("boom", 1000.0)])
    before.consume(full(1001.0, fd=4))
    before.tick(1030.5)  # the fd 3 queue resolves; fd 4's not yet
    firing3, log, firing4, resolved3 = held
    stamped = [replace(firing3, created_at=1000.0), replace(log, created_at=1000.0),
               replace(grouped([replace(firing4, created_at=1001.0)]), created_at=1001.0),
               replace(resolved3, created_at=1031.0)]
    path = tmp_path / "alarms.db"
    outbox = SqliteOutbox(path)
    await outbox.open()
    await outbox.add(stamped, 1031.0)
    await outbox.close()
    outbox = SqliteOutbox(path)
    await outbox.open()
    try:
        latest = await outbox.latest_alerts(10)
        assert [(n.status, n.alert) for n in latest] == [
            ("resolved", firing3.alert), ("firing", firing4.alert)]
        assert [n.alert for n in await outbox.latest_alerts(1)] == [firing3.alert]
    finally:
        await outbox.close()
    engine, emitted, count = restarted(BACKLOG, latest)
    assert count == 1
    engine.tick(1032.0)
    assert [(n.status, n.alert) for n in emitted] == [("resolved", firing4.alert)]


def test_resolved_and_repeated_are_counted_for_metrics(tmp_path: Path) -> None:
    """/metrics: collector_alarms_resolved_total and collector_alarms_repeated_total per
    app, alarm and plugin, as the engine emits them."""
    body = "alarm-backlog = page\nalarm-repeat = 60\nalarm-resolve-after = 150\n"
    engine, emitted = engine_for(body)
    engine.consume(full(1000.0))
    engine.tick(1061.0)
    engine.tick(1122.0)
    engine.tick(1151.0)
    assert [n.status for n in emitted] == ["firing", "firing", "firing", "resolved"]
    dispatcher = Dispatcher(SqliteOutbox(tmp_path / "alarms.db"), {}, {})
    dispatcher.plugins[("shop", "page")] = "cmd"
    # prometheus-client names a counter family without its `_total` suffix.
    by_name = {f.name: f for f in families(engine, dispatcher)}
    for name, value in (("collector_alarms_resolved", 1), ("collector_alarms_repeated", 2)):
        samples = [s for s in by_name[name].samples if s.name.endswith("_total")]
        assert [(s.labels, s.value) for s in samples] == [
            ({"app": "shop", "alarm": "page", "plugin": "cmd"}, value)], name


def test_a_replayed_report_older_than_the_restored_one_does_not_resolve_it_early() -> None:
    """A takeover's replay may feed a full report from before the restored one's: the
    queue still resolves resolve_after seconds after the newest report."""
    before, held = engine_for(BACKLOG)
    before.consume(full(1010.0))
    engine, emitted, _ = restarted(BACKLOG, held)
    engine.consume(full(1000.0))  # raised again (in cluster mode: the same id, held)
    engine.tick(1035.0)
    assert [n.status for n in emitted] == ["firing"]
    engine.tick(1040.0)
    assert [n.status for n in emitted] == ["firing", "resolved"]
