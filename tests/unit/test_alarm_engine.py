"""The alarms engine fed records directly: uWSGI's alarm semantics, conditions beyond
uWSGI's, anti-storm, and bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.engine import AlarmEngine, truncate
from alarms.notification import Notification
from alarms.notifiers.base import Services
from alarms.notifiers.log import LogNotifier
from alarms.storm import Storm
from collector.record import Record
from collector.server.reload import same_settings
from tests.unit.alarm_support import record, rules_from

ALARMS = "alarm = page cmd:true\nalarm = hook webhook:http://127.0.0.1:1/x\n"
BACKLOG = ('{date} - *** uWSGI listen queue of socket "127.0.0.1:9000" (fd: 3) full !!! '
           "({queue}/100) ***")
SEGFAULT = "!!! uWSGI process 4242 got Segmentation Fault !!!"
BACKTRACE = ["*** backtrace of 4242 ***", "uwsgi(uwsgi_backtrace+0x2e) [0x55d0]",
             "uwsgi(uwsgi_segfault+0x27) [0x55d1]", "/lib/libc.so.6(+0x3c050) [0x7f00]",
             "*** end of backtrace ***"]


def engine_for(body: str) -> tuple[AlarmEngine, list[Notification]]:
    """An engine for app `shop` with ALARMS and `body`, collecting what it fires."""
    fired: list[Notification] = []
    clock = [1000.0]
    return AlarmEngine([rules_from(ALARMS + body)], fired.append,
                       clock=lambda: clock[0]), fired


def test_not_log_alarm_stops_the_rules_after_it_only() -> None:
    """uWSGI's order: a matching not-log-alarm ends the scan; rules before it still fire."""
    engine, fired = engine_for("log-alarm = page HTTP/1\\.1 5\\d\\d\n"
                               "not-log-alarm = hook /healthz\n"
                               "log-alarm = hook HTTP/1\\.1 5\\d\\d\n")
    engine.consume([record("GET /healthz (HTTP/1.1 503)", 1000.0)])
    assert [n.alarm for n in fired] == ["page"]
    engine.consume([record("GET /cart (HTTP/1.1 502)", 1010.0)])
    assert [n.alarm for n in fired] == ["page", "page", "hook"]
    assert fired[-1].message == "GET /cart (HTTP/1.1 502)"
    assert fired[-1].condition == "log"


def test_non_matching_not_log_alarm_changes_nothing() -> None:
    """A negative rule that does not match does not stop anything."""
    engine, fired = engine_for("not-log-alarm = hook /healthz\nlog-alarm = hook 5\\d\\d\n")
    engine.consume([record("GET / 500", 1000.0)])
    assert [n.alarm for n in fired] == ["hook"]


def test_uwsgi_alarm_lines_and_alarm_records_never_alarm() -> None:
    """Lines starting `[uwsgi-alarm` (and the collector's own alarm records) cannot loop."""
    engine, fired = engine_for("log-alarm = page boom\n")
    engine.consume([record("[uwsgi-alarm] boom", 1000.0),
                    record("ALARM: boom", 1000.0, kind="alarm")])
    assert fired == []
    engine.consume([record("boom", 1000.0)])
    assert len(fired) == 1


def test_alarm_freq_suppresses_the_same_message_and_counts_it() -> None:
    """The same message to the same alarm within alarm-freq is held back and counted; the
    count travels with that alarm's next notification."""
    engine, fired = engine_for("alarm-freq = 3\nlog-alarm = page boom\n")
    engine.consume([record("boom", 1000.0), record("boom", 1001.0), record("boom", 1002.0)])
    assert len(fired) == 1
    assert engine.suppressed[("shop", "page")] == 2
    engine.consume([record("boom", 1003.5)])
    assert len(fired) == 2
    assert fired[1].suppressed == 2
    assert "2 earlier messages to this alarm were suppressed" in fired[1].text()


def test_a_different_message_is_not_suppressed() -> None:
    """uWSGI only compares with the last message: a different one goes out at once."""
    engine, fired = engine_for("log-alarm = page boom\n")
    engine.consume([record("boom 1", 1000.0), record("boom 2", 1000.1),
                    record("boom 1", 1000.2)])
    assert len(fired) == 3


def test_one_full_listen_queue_pages_once() -> None:
    """A queue logged full every second for a minute, with changing date and counts, is one
    episode: alarm-freq compares the message without them and slides while it repeats."""
    engine, fired = engine_for("alarm-backlog = page\n")
    for second in range(60):
        line = BACKLOG.format(date=f"Tue Nov 24 22:{second // 60:02d}:{second % 60:02d} 2026",
                              queue=100 + second % 7)
        engine.consume([record(line, 1000.0 + second)])
    assert len(fired) == 1
    (notification,) = fired
    assert notification.condition == "backlog"
    assert notification.message == ('listen queue of socket "127.0.0.1:9000" (fd: 3) full '
                                    "!!! (100/100)")
    assert notification.facts == {"socket": "127.0.0.1:9000", "fd": 3, "queue": 100,
                                  "max": 100}
    # Quiet for longer than alarm-freq: a new episode pages again, with the count.
    engine.consume([record(BACKLOG.format(date="Tue Nov 24 23:00:00 2026", queue=101),
                           1000.0 + 59 + 3.5)])
    assert len(fired) == 2
    assert fired[1].suppressed == 59


def test_segfault_and_backtrace_become_one_alarm_across_interleaved_sources() -> None:
    """The segfault line, then the backtrace as one datagram's lines: one alarm with all of
    it, while another source's lines arrive in between."""
    engine, fired = engine_for("alarm-segfault = hook\n")
    engine.consume([record("GET /fine 200", 999.0), record(SEGFAULT, 1000.0),
                    record("other dyno says hi", 1000.0, source="web.2"),
                    record("!!! uWSGI process 77 got Segmentation Fault !!!", 1000.0,
                           source="web.2")])
    assert fired == []
    engine.consume([record(line, 1000.01) for line in BACKTRACE])
    (notification,) = fired
    assert notification.message.split("\n") == [SEGFAULT, *BACKTRACE]
    assert notification.source == "web.1"
    assert notification.facts == {"pid": 4242, "signal": "Segmentation Fault",
                                  "frames": 3, "complete": True}
    assert notification.context == ["GET /fine 200"]
    # web.2's crash never got its backtrace: sent with what it has once its time is up.
    engine.tick(1000.0 + 3.1)
    assert len(fired) == 2
    assert fired[1].source == "web.2"
    assert fired[1].message.endswith("(no backtrace received)")
    assert fired[1].facts["complete"] is False


def test_backtrace_is_bounded_in_lines() -> None:
    """A backtrace that never ends is cut at the line bound and sent."""
    engine, fired = engine_for("alarm-segfault = hook\n")
    engine.consume([record(SEGFAULT, 1000.0), record(BACKTRACE[0], 1000.0)])
    engine.consume([record(f"frame {i}", 1000.0) for i in range(500)])
    (notification,) = fired
    assert len(notification.message.split("\n")) <= 201
    assert notification.message.endswith("(backtrace incomplete)")


def test_harakiri() -> None:
    """alarm-harakiri fires on uWSGI's harakiri line, with worker and pid as facts."""
    engine, fired = engine_for("alarm-harakiri = page\n")
    engine.consume([record("Tue Nov 24 22:00:00 2026 - *** HARAKIRI ON WORKER 2 (pid: 31, "
                           "try: 1, graceful: no) ***", 1000.0)])
    (notification,) = fired
    assert notification.facts == {"worker": 2, "pid": 31, "try": 1}
    assert notification.message == "*** HARAKIRI ON WORKER 2 (pid: 31, try: 1, graceful: no) ***"


def test_silence_alarms_once_per_silence_for_watched_sources() -> None:
    """A watched source that logged before and then says nothing alarms once; logging
    again resolves and re-arms it; unwatched sources never alarm."""
    engine, fired = engine_for("alarm-silence = page 60 ^web\\.\n")
    engine.consume([record("hi", 1000.0, source="web.1"),
                    record("hi", 1000.0, source="worker.1")])
    engine.tick(1059.0)
    assert fired == []
    engine.tick(1061.0)
    engine.tick(1100.0)
    assert [(n.source, n.condition) for n in fired] == [("web.1", "silence")]
    engine.consume([record("back", 1200.0, source="web.1")])
    engine.tick(1261.0)
    assert [n.status for n in fired] == ["firing", "resolved", "firing"]


def test_rate_threshold() -> None:
    """alarm-rate fires when COUNT matching lines fall within SECONDS, across sources."""
    engine, fired = engine_for("alarm-rate = page 3/10 HTTP/1\\.1 5\\d\\d\n")
    engine.consume([record("GET / (HTTP/1.1 500)", 1000.0),
                    record("GET / (HTTP/1.1 200)", 1001.0),
                    record("GET / (HTTP/1.1 502)", 1002.0, source="web.2")])
    assert fired == []
    engine.consume([record("GET / (HTTP/1.1 503)", 1011.0)])  # the first fell out
    assert fired == []
    engine.consume([record("GET / (HTTP/1.1 504)", 1011.5)])
    (notification,) = fired
    assert notification.condition == "rate"
    assert notification.count == 3
    assert notification.first_seen == 1002.0


def test_rules_of_one_app_do_not_see_another() -> None:
    """Each app's rules see only that app's records."""
    engine, fired = engine_for("log-alarm = page boom\n")
    engine.consume([record("boom", 1000.0, app="other")])
    assert fired == []


def test_msg_size_cuts_with_a_note() -> None:
    """alarm-msg-size bounds a message in bytes (UTF-8 kept whole) and says what was cut."""
    cut = truncate("é" * 5000, 1000)
    assert len(cut.encode()) <= 1000
    assert cut.endswith("bytes cut by alarm-msg-size]")
    assert truncate("short", 1000) == "short"


def test_storm_sliding_and_fixed_windows() -> None:
    """A fixed window (uWSGI's) lets a repeat through after freq; a sliding one waits for
    freq seconds of quiet."""
    fixed, sliding = Storm(), Storm()
    results = [(fixed.admit("m", t, 3.0), sliding.admit("m", t, 3.0, sliding=True))
               for t in (0.0, 2.0, 4.0, 6.5, 9.6)]
    assert results == [(0, 0), (None, None), (1, None), (None, None), (1, 3)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=30))
def test_fuzz_engine_never_raises(lines: list[str]) -> None:
    """Any text through every condition: no exception, whatever fires."""
    engine, fired = engine_for("alarm-backlog = page\nalarm-segfault = hook\n"
                               "alarm-harakiri = page\nalarm-rate = page 2/5 e\n"
                               "alarm-silence = hook 1\nlog-alarm = page,hook [a-z]+\\d\n"
                               "not-log-alarm = hook x\n")
    for i, line in enumerate([*lines, SEGFAULT, *lines, BACKTRACE[0], *lines]):
        engine.consume([record(line, 1000.0 + i / 10)])
    engine.tick(2000.0)
    engine.finish()
    assert all(n.app == "shop" for n in fired)


def test_anti_storm_is_per_source_as_each_dyno_had_its_own() -> None:
    """The same message from two dynos alarms for each (in uWSGI each dyno's alarm
    instance remembers only its own last message); each dyno's repeats are held back."""
    engine, fired = engine_for("log-alarm = page boom\n")
    engine.consume([record("boom", 1000.0, source="web.1"),
                    record("boom", 1000.5, source="web.2"),
                    record("boom", 1001.0, source="web.1"),
                    record("boom", 1001.5, source="web.2")])
    assert [n.source for n in fired] == ["web.1", "web.2"]
    assert engine.suppressed[("shop", "page")] == 2


def test_replaced_rules_apply_to_the_next_record_and_unchanged_apps_keep_state() -> None:
    """A reload's new rules judge the next record; an app whose rules did not change
    (only moved in the file) keeps its state: a rate window counts on across the swap."""
    rate = "alarm-rate = page 2/60 ^boom\n"
    engine, fired = engine_for(rate)
    engine.consume([record("boom 1", 1000.0), record("disk full", 1000.5)])
    moved = rules_from("\n\n" + ALARMS + rate)
    other = rules_from(ALARMS + "log-alarm = hook ^disk full\n", app="web")
    engine.replace_rules([moved, other], same_settings)
    engine.consume([record("boom 2", 1001.0)])
    assert [n.condition for n in fired] == ["rate"]
    engine.consume([record("disk full", 1002.0, app="web")])
    assert [(n.app, n.alarm) for n in fired] == [("shop", "page"), ("web", "hook")]
    engine.replace_rules([rules_from(ALARMS + "alarm-rate = page 2/60 ^bang\n")],
                         same_settings)
    engine.consume([record("boom 3", 1003.0), record("disk full", 1003.5, app="web")])
    assert len(fired) == 2

async def test_log_notifier_records_do_not_end_a_silence() -> None:
    """A silence alarm sent through `log:` writes alarm records under the silent source's
    name; fed back to the engine (as ingest does), they neither re-arm the silence (which
    would page once per period, forever) nor count as the source speaking."""
    engine, fired = engine_for("alarm = note log:\nalarm-silence = note 60\n"
                               "log-alarm = page boom\n")
    published: list[Record] = []

    def publish(records: list[Record]) -> bool:
        published.extend(records)
        engine.consume(records)
        return True

    notifier = LogNotifier("", Services(publish=publish, next_ids=lambda n: 1_061_000_000))
    engine.consume([record("hi", 1000.0, source="web.1")])
    engine.tick(1061.0)
    (silence,) = fired
    await notifier.send(silence)
    assert {r.source for r in published} == {"web.1"}
    for now in (1122.0, 1183.0, 1300.0):
        engine.tick(now)
    assert len(fired) == 1
    engine.consume([record("boom", 1400.0, source="web.1")])
    assert fired[-1].context == ["hi"]
