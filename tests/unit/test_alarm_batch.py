"""The engine's batched evaluation (runs of one app, a prefilter over the run's lines
joined) against the per-record evaluation it replaces: the same events and the same
notifications, in the same order, for random rules and lines."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alarms.bounds import DEFAULT, Bounds
from alarms.engine import AlarmEngine
from alarms.notification import Notification
from alarms.stable_ids import stable_id
from collector.record import Record
from tests.unit.alarm_support import record, rules_from

ALARMS = "alarm = page cmd:true\nalarm = hook webhook:http://127.0.0.1:1/x\n"
# Rules of every kind, anchored and not, some that match across a newline or only at a
# line's ends: the joined search must never miss what the per-line one finds.
RULES = [
    "log-alarm = page error", "log-alarm = hook ^GET /x", "not-log-alarm = page,hook x$",
    "log-alarm = page,hook \\d{3}$", "not-log-alarm = hook ^error",
    "log-alarm = hook (?i)DEADLOCK", "log-alarm = page a\\sb", "log-alarm = page [^a]b",
    "log-alarm = hook \\bok\\b", "log-alarm = page ^$", "log-alarm = hook \\Aerr",
    "log-alarm = page r\\z", "alarm-rate = page 2/5 oops", "alarm-rate = hook 3/1 ^b",
    "alarm-backlog = page", "alarm-segfault = hook", "alarm-harakiri = page",
    "alarm-silence = hook 1", "alarm-freq = 0.5",
]
FRAGMENTS = ["error", "GET /x", "x", "200", "DeadLock", "a", "b", " ", "ok", "r", "oops",
             "[uwsgi-alarm", "!!! uWSGI process 42 got Segmentation Fault !!!",
             "*** backtrace of 42 ***", "*** end of backtrace ***", "frame",
             "*** HARAKIRI ON WORKER 1 (pid: 42, try: 1) ***",
             '*** uWSGI listen queue of socket "s" (fd: 3) full !!! (100/100) ***', "é"]

lines = st.lists(st.sampled_from(FRAGMENTS), max_size=4).map("".join)
records = st.lists(st.tuples(lines, st.sampled_from(["shop", "shop", "other"]),
                             st.sampled_from(["web.1", "web.2"]),
                             st.sampled_from(["log"] * 5 + ["alarm"])), max_size=60)


def reference_consume(engine: AlarmEngine, batch: Sequence[Record]) -> None:
    """The evaluation before batching: each record through its app's `evaluate`."""
    for item in batch:
        app = engine._apps.get(item.app)
        if app is not None:
            events = app.evaluate(item)
            if events:
                engine._raised.clear()
                engine._emit(app, events)


def engines(rules: list[str], bounds: Bounds = DEFAULT,
            ) -> tuple[list[AlarmEngine], list[list[Notification]]]:
    """Two identical engines for apps shop and other, each with its own list of what
    fired."""
    body = ALARMS + "\n".join(rules) + "\n"
    fired: list[list[Notification]] = [[], []]
    built = [AlarmEngine([rules_from(body), rules_from(body, app="other")], out.append,
                         clock=lambda: 1000.0, ids=stable_id, bounds=bounds)
             for out in fired]
    return built, fired


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(RULES), min_size=1, max_size=8, unique=True), records,
       st.integers(min_value=1, max_value=40), st.sampled_from([1, 2, 10_000]))
def test_batched_evaluation_gives_the_per_record_notifications(
        rules: list[str], items: list[tuple[str, str, str, str]], size: int,
        sources: int) -> None:
    """Random rules and lines, in batches of random size: the batched engine fires the
    same notifications (ids, messages, context, counts) in the same order as per record,
    with the sources' context bounded to one or two sources (evicted alike) or not."""
    (new, old), (fired_new, fired_old) = engines(rules, Bounds(sources=sources))
    batch = [record(line, 1000.0 + i / 7, source=source, app=app, kind=kind)
             for i, (line, app, source, kind) in enumerate(items)]
    for first in range(0, len(batch), size):
        new.consume(batch[first:first + size])
        reference_consume(old, batch[first:first + size])
    assert fired_new == fired_old
    new.tick(2000.0)
    old.tick(2000.0)
    new.finish()
    old.finish()
    assert fired_new == fired_old
    assert new.sizes() == old.sizes()
    assert new.evictions.counts == old.evictions.counts
    assert new._apps.keys() == old._apps.keys()
    for app in new._apps:
        for source in ("web.1", "web.2"):
            assert new._apps[app].context(source) == old._apps[app].context(source)


def test_a_quiet_run_skips_the_per_line_search_and_keeps_the_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run of lines that no firing rule matches takes the joined path: nothing fires,
    and each source's context holds its lines as the per-line path would."""
    (new, _), (fired, _) = engines(["log-alarm = page error", "not-log-alarm = hook x"])
    engine = new._apps["shop"]
    calls: list[str] = []
    search = engine._search
    assert search is not None

    def counting(line: str) -> list[int]:
        calls.append(line)
        return search(line)

    monkeypatch.setattr(engine, "_search", counting)
    new.consume([record(f"x line {i}", 1000.0 + i, source=f"web.{i % 2}") for i in range(6)])
    assert calls == []
    assert fired == []
    assert engine.context("web.1") == ["x line 1", "x line 3", "x line 5"]
    new.consume([record("x", 1010.0), record("an error", 1011.0)])
    assert calls == ["x", "an error"]
    assert [(n.alarm, n.message) for n in fired] == [("page", "an error")]


@pytest.mark.parametrize("rule", ["log-alarm = page \\Aerr", "log-alarm = page r\\z",
                                  "log-alarm = page (?-m)^err", "alarm-rate = page 1/5 (?-m)r$"])
def test_rules_anchored_at_the_text_ends_fire_on_a_later_line_of_a_run(rule: str) -> None:
    """Patterns that a joined search would miss after the first line (anchors on the
    whole text) still fire on every line, as per record."""
    (new, old), (fired_new, fired_old) = engines([rule])
    batch = [record("x", 1000.0), record("err", 1001.0), record("y", 1002.0)]
    new.consume(batch)
    reference_consume(old, batch)
    assert [n.message for n in fired_new] == [n.message for n in fired_old]
    assert len(fired_new) == 1
