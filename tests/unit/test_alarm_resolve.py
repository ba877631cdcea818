"""Resolved and repeated notifications, fed records and ticks directly: each stateful
condition resolves once, only after a firing notification went out, never with
alarm-resolve = false; alarm-repeat and Alertmanager re-posts while firing."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from alarms.bounds import Bounds
from alarms.cli import run_test
from alarms.engine import AlarmEngine
from alarms.notification import Notification
from alarms.stable_ids import IdKey, random_id, stable_id
from collector.record import Record
from tests.unit.alarm_support import record, rules_from

ALARMS = "alarm = page cmd:true\nalarm = hook webhook:http://127.0.0.1:1/x\n"
FULL = ('Tue Dec  1 02:00:00 2026 - *** uWSGI listen queue of socket "{socket}" (fd: {fd}) '
        "full !!! (101/100) ***")


def engine_for(body: str, ids: Callable[[IdKey], str] = random_id
               ) -> tuple[AlarmEngine, list[Notification]]:
    """An engine for app `shop` with ALARMS and `body`, collecting what it emits."""
    emitted: list[Notification] = []
    return AlarmEngine([rules_from(ALARMS + body)], emitted.append, clock=lambda: 1000.0,
                       ids=ids), emitted


def full(at: float, socket: str = "127.0.0.1:9000", fd: int = 3, source: str = "web.1"
         ) -> list[Record]:
    """A record of a listen queue reported full."""
    return [record(FULL.format(socket=socket, fd=fd), at, source=source)]


def states(emitted: list[Notification]) -> list[tuple[str, str, str]]:
    """(status, condition, source) of each notification."""
    return [(n.status, n.condition, n.source) for n in emitted]


def test_backlog_resolves_once_after_resolve_after_without_a_full_report() -> None:
    """A queue reported full for a while fires once; resolve_after seconds after its last
    report it resolves, once, with the firing one's group and alert, its first_seen, and
    last_seen when it resolved; each queue of each source is its own alert."""
    engine, emitted = engine_for("alarm-backlog = page\nalarm-resolve-after = 30\n")
    for at in (1000.0, 1001.0, 1002.0):
        engine.consume(full(at))
    engine.consume(full(1002.5, fd=4))
    assert states(emitted) == [("firing", "backlog", "web.1")] * 2
    engine.tick(1031.9)
    assert len(emitted) == 2
    engine.tick(1032.1)
    firing, other, resolved = emitted
    assert resolved.status == "resolved"
    assert (resolved.group, resolved.alert) == (firing.group, firing.alert)
    assert resolved.alert
    assert resolved.alert != other.alert
    assert (resolved.first_seen, resolved.last_seen) == (1000.0, 1032.0)
    assert resolved.facts["last_full"] == 1002.0
    assert "not reported full for 30 s" in resolved.message
    engine.tick(1040.0)
    assert [n.status for n in emitted[3:]] == ["resolved"]
    assert emitted[3].alert == other.alert
    engine.tick(2000.0)
    assert len(emitted) == 4


def test_silence_resolves_when_the_source_logs_again_once() -> None:
    """A silent source alarms; its next line resolves it (found at the next tick), once,
    with the firing one's keys; a source that logs without having alarmed resolves
    nothing."""
    engine, emitted = engine_for("alarm-silence = page 60\n")
    engine.consume([record("hi", 1000.0), record("hi", 1000.0, source="web.2")])
    engine.consume([record("still here", 1050.0, source="web.2")])
    engine.tick(1061.0)
    (firing,) = emitted
    engine.consume([record("back", 1070.0), record("back again", 1071.0),
                    record("more", 1072.0, source="web.2")])
    engine.tick(1072.0)
    engine.tick(1073.0)
    assert states(emitted) == [("firing", "silence", "web.1"),
                               ("resolved", "silence", "web.1")]
    resolved = emitted[1]
    assert (resolved.group, resolved.alert) == (firing.group, firing.alert)
    assert resolved.last_seen == 1070.0
    assert resolved.facts["silent_for"] == 70.0


def test_rate_resolves_once_a_whole_window_passes_without_the_threshold() -> None:
    """A rate alert is the rule's across sources: a second firing from another source in
    the same episode keeps its alert key; a window after the last firing with fewer
    matches resolves it once, under the source of the last firing."""
    engine, emitted = engine_for("alarm-freq = 0\nalarm-rate = page 2/10 HTTP/1\\.1 5\\d\\d\n")
    engine.consume([record("GET / (HTTP/1.1 500)", 1000.0),
                    record("GET / (HTTP/1.1 500)", 1001.0)])
    engine.consume([record("GET / (HTTP/1.1 502)", 1005.0, source="web.2"),
                    record("GET / (HTTP/1.1 502)", 1006.0, source="web.2")])
    first, second = emitted
    assert first.alert == second.alert != ""
    assert (first.source, second.source) == ("web.1", "web.2")
    engine.consume([record("GET / (HTTP/1.1 503)", 1010.0)])  # below the threshold
    engine.tick(1015.9)
    assert len(emitted) == 2
    engine.tick(1016.0)
    resolved = emitted[2]
    assert (resolved.status, resolved.source, resolved.alert, resolved.group) == (
        "resolved", "web.2", first.alert, first.group)
    assert resolved.last_seen == 1016.0
    engine.tick(1100.0)
    assert len(emitted) == 3


def test_no_resolved_without_an_emitted_firing() -> None:
    """An episode whose firing alarm-freq held back entirely resolves silently: nobody
    was told it began. (A reload starts the app's conditions afresh while alarm-freq
    still remembers the queue's message.)"""
    body = "alarm-backlog = page\nalarm-resolve-after = 10\nalarm-freq = 3600\n"
    engine, emitted = engine_for(body)
    engine.consume(full(1000.0))
    engine.replace_rules([rules_from(ALARMS + body + "alarm-msg-size = 4096\n")],
                         lambda old, new: old == new)
    engine.consume(full(1001.0))  # held back by alarm-freq
    engine.tick(1011.0)
    engine.tick(1100.0)
    assert [n.status for n in emitted] == ["firing"]


def test_after_a_resolved_the_next_firing_is_not_held_back_by_alarm_freq() -> None:
    """Told that the queue cleared, the receiver hears when it fills again, though the
    message is the same and alarm-freq has not passed."""
    engine, emitted = engine_for("alarm-backlog = page\nalarm-resolve-after = 10\n"
                                 "alarm-freq = 3600\n")
    engine.consume(full(1000.0))
    engine.tick(1011.0)
    engine.consume(full(1020.0))
    engine.consume(full(1021.0))  # the same episode: held back
    engine.tick(1031.5)
    assert [n.status for n in emitted] == ["firing", "resolved", "firing", "resolved"]
    assert emitted[2].alert == emitted[0].alert


def test_alarm_resolve_false_sends_no_resolved_and_tracks_nothing() -> None:
    """alarm-resolve = false: firing as before, no resolved notification, and the
    conditions keep no state to find an end."""
    engine, emitted = engine_for("alarm-resolve = false\nalarm-backlog = page\n"
                                 "alarm-silence = page 5\nalarm-rate = page 1/5 boom\n"
                                 "alarm-resolve-after = 1\n")
    engine.consume(full(1000.0))
    engine.consume([record("boom", 1000.0, source="web.2")])
    engine.tick(1006.0)
    engine.consume([record("back", 1007.0), record("back", 1007.0, source="web.2")])
    engine.tick(1010.0)
    assert {n.status for n in emitted} == {"firing"}
    assert len(emitted) == 4  # backlog, rate, and the silences of web.1 and web.2
    assert "backlog" not in engine.sizes()
    assert "alerts" not in engine.sizes()


def test_repeat_resends_a_firing_alert_until_it_resolves() -> None:
    """alarm-repeat: an alert still firing is sent again `repeat` seconds after its last
    notification, bypassing alarm-freq and marked as a repeat; once resolved, no more."""
    engine, emitted = engine_for("alarm-backlog = page\nalarm-repeat = 60\n"
                                 "alarm-resolve-after = 100\nalarm-freq = 3600\n")
    for at in range(1000, 1150, 10):
        engine.consume(full(float(at)))
        engine.tick(float(at) + 5)
    firing, repeat1, repeat2 = emitted
    assert firing.status == repeat1.status == repeat2.status == "firing"
    assert "repeat" not in firing.facts
    assert (repeat1.facts["repeat"], repeat2.facts["repeats"]) == (True, 2)
    assert repeat1.alert == repeat2.alert == firing.alert
    assert repeat1.id != firing.id
    assert repeat1.message == firing.message
    engine.tick(1240.0)  # the last report was at 1140: it resolved before the next repeat
    assert [n.status for n in emitted[3:]] == ["resolved"]
    engine.tick(1400.0)
    assert len(emitted) == 4


def test_repeat_is_off_by_default_and_logs_alarms_never_repeat() -> None:
    """Without alarm-repeat a firing alert is not sent again; a log-alarm has no state."""
    engine, emitted = engine_for("alarm-backlog = page\nalarm-resolve-after = 1000\n"
                                 "log-alarm = hook boom\n")
    engine.consume([*full(1000.0), record("boom", 1000.0)])
    for at in range(1000, 2000, 50):
        engine.tick(float(at))
    assert [n.condition for n in emitted] == ["backlog", "log"]


def test_alertmanager_alerts_still_firing_are_reposted_before_ends_at() -> None:
    """An Alertmanager alarm's stateful alert is re-posted every half resolve_timeout
    (or `repost`) while firing, though alarm-repeat is off; the other alarm is not."""
    engine, emitted = engine_for(
        "alarm = am alertmanager:http://127.0.0.1:1;resolve_timeout=20s\n"
        "alarm = am2 alertmanager:http://127.0.0.1:1;repost=15s\n"
        "alarm-backlog = am,am2,page\nalarm-resolve-after = 1000\n")
    engine.consume(full(1000.0))
    for at in range(1001, 1031):
        engine.tick(float(at))
    sent = [(n.alarm, n.last_seen, bool(n.facts.get("repeat"))) for n in emitted]
    assert sorted(sent[:3]) == [("am", 1000.0, False), ("am2", 1000.0, False),
                                ("page", 1000.0, False)]
    assert sorted((a, r) for a, _, r in sent[3:]) == [
        ("am", True), ("am", True), ("am", True), ("am2", True), ("am2", True)]


def test_resolved_and_repeated_ids_are_stable_across_a_replay() -> None:
    """Cluster mode: replaying the same log and ticks names resolved and repeated
    notifications alike, and a resolved one apart from its firing one."""
    def run() -> list[str]:
        engine, emitted = engine_for("alarm-backlog = page\nalarm-resolve-after = 30\n"
                                     "alarm-repeat = 10\n", ids=stable_id)
        engine.consume_message(1, 1000.0, full(1000.0))
        for at in (1005.0, 1011.0, 1021.5, 1031.0):
            engine.tick(at)
        assert [n.status for n in emitted] == ["firing", "firing", "firing", "resolved"]
        return [n.id for n in emitted]

    first = run()
    assert run() == first
    assert len(set(first)) == 4


def test_two_queues_resolving_at_one_log_time_get_distinct_stable_ids() -> None:
    """Cluster mode: two queues of one source last reported full in the same message
    resolve at the same log time; their resolved (and repeated) ids still differ, so
    neither is taken for the other in the outbox."""
    engine, emitted = engine_for("alarm-backlog = page\nalarm-resolve-after = 30\n"
                                 "alarm-repeat = 10\n", ids=stable_id)
    engine.consume_message(1, 1000.0, [*full(1000.0), *full(1000.0, fd=4)])
    engine.tick(1010.0)
    engine.tick(1030.0)
    assert [n.status for n in emitted] == ["firing"] * 4 + ["resolved"] * 2
    assert len({n.id for n in emitted}) == 6


def test_a_reload_that_replaces_the_apps_engine_forgets_its_alerts() -> None:
    """New rules for the app: the old conditions' alerts can no longer clear, so they are
    dropped rather than repeated for ever."""
    body = "alarm-backlog = page\nalarm-resolve-after = 1000\nalarm-repeat = 10\n"
    engine, emitted = engine_for(body)
    engine.consume(full(1000.0))
    engine.tick(1010.0)
    assert len(emitted) == 2
    engine.replace_rules([rules_from(ALARMS + body + "alarm-freq = 5\n")],
                         lambda old, new: old == new)
    engine.tick(1020.0)
    engine.tick(1030.0)
    assert len(emitted) == 2
    assert "alerts" not in engine.sizes()


def test_resolve_state_is_bounded_and_evictions_are_counted() -> None:
    """More full queues than the bounds: the watched queues level off at `sources` and
    the open alerts at `alerts`, each eviction counted; an evicted alert is not
    resolved, the others are."""
    emitted: list[Notification] = []
    engine = AlarmEngine([rules_from(ALARMS + "alarm-backlog = page\n"
                                     "alarm-resolve-after = 10\n")], emitted.append,
                         clock=lambda: 1000.0, bounds=Bounds(sources=3, alerts=2))
    for fd in range(5):
        engine.consume(full(1000.0 + fd, fd=fd, source=f"web.{fd}"))
    assert engine.sizes()["backlog"] == 3
    assert engine.sizes()["alerts"] == 2
    assert (engine.evictions.counts["backlog"], engine.evictions.counts["alerts"]) == (2, 3)
    engine.tick(1100.0)
    assert [(n.status, n.source) for n in emitted if n.status == "resolved"] == [
        ("resolved", "web.3"), ("resolved", "web.4")]
    assert engine.sizes()["backlog"] == 0
    assert "alerts" not in engine.sizes()


def test_alarms_test_command_prints_resolved_apart(tmp_path: Path) -> None:
    """`collector alarms test` over time-stamped lines: a listen queue that fills and then
    stays quiet past alarm-resolve-after prints `fire` and then `resolved`."""
    config = tmp_path / "collector.ini"
    config.write_text(f"[collector]\ndata-dir = {tmp_path / 'data'}\n\n"
                      "[listener:crypto]\nudp = 127.0.0.1:9\nformat = crypto\n"
                      "secret = never-used\n\n[app:shop]\n" + ALARMS
                      + "alarm-backlog = page\nalarm-resolve-after = 5\n")
    queue = FULL.format(socket="s", fd=3)
    lines = io.StringIO(f"2026-12-01T02:00:00+00:00 shop[web.1]: {queue}\n"
                        "2026-12-01T02:00:10+00:00 shop[web.1]: GET / 200\n")
    out = io.StringIO()
    run_test(str(config), "shop", "web.1", lines, out)
    printed = [line for line in out.getvalue().splitlines() if not line.startswith(" ")]
    assert printed == ["fire  page (cmd)  backlog  web.1",
                       "resolved page (cmd)  backlog  web.1",
                       "-- 2 lines, 2 notification(s) --"]
