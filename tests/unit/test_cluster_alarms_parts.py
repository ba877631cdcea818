"""The pure parts of cluster alarms: lease decisions, stable notification ids, the
warm-up window, the floor's encoding (fed values, no NATS)."""

from __future__ import annotations

import re

import pytest

from alarms.engine import AlarmEngine
from alarms.notification import Notification
from alarms.spec import AlarmSpec, AppRules, LogRule, RateRule, SilenceRule
from alarms.stable_ids import IdKey, random_id, stable_id
from alarms.warmup import BACKTRACE_WAIT, warmup_seconds
from collector.cluster.errors import ClusterError
from collector.cluster.lease import LeaseState
from collector.errors import Location
from collector.record import Record

HERE = Location("test.ini", 1, "alarm")


def test_a_node_leads_once_a_create_or_update_succeeds_and_counts_each_change() -> None:
    """Winning makes a leader (one change); renewing is no change."""
    state = LeaseState(hold=4.0)
    assert not state.leader
    assert state.won(10.0, 7) is True
    assert (state.leader, state.revision, state.changes) == (True, 7, 1)
    assert state.won(11.0, 8) is False
    assert (state.revision, state.renewed_at, state.changes) == (8, 11.0, 1)


def test_a_refused_compare_and_set_loses_the_lease_at_once() -> None:
    """Another writer got the key: not the leader any more, whatever the time."""
    state = LeaseState(hold=4.0)
    state.won(10.0, 3)
    assert state.refused() is True
    assert (state.leader, state.revision, state.changes) == (False, None, 2)
    assert state.refused() is False  # a follower refused stays a follower: no change


def test_no_answer_keeps_the_lease_only_until_hold_seconds_after_the_last_renewal() -> None:
    """NATS silent: still the leader 3.9 s after the last renewal, not at 4 s (before the
    key's 5 s TTL can let another node in)."""
    state = LeaseState(hold=4.0)
    state.won(100.0, 1)
    assert (state.unanswered(103.9), state.leader) == (False, True)
    assert state.deadline(103.0) == pytest.approx(1.0)
    assert (state.unanswered(104.0), state.leader) == (True, False)
    assert state.unanswered(200.0) is False  # a follower has nothing to lose


def test_a_follower_waits_no_longer_than_the_ttl_for_an_attempt() -> None:
    """The bound on one attempt: the TTL for a follower, what is left of `hold` for a
    leader (never zero, so the attempt can still be made)."""
    state = LeaseState(hold=4.0)
    assert state.deadline(0.0) == 5.0
    state.won(0.0, 1)
    assert state.deadline(10.0) == 0.05


def key(**change: object) -> IdKey:
    """A line-driven key, changed as asked."""
    values: dict[str, object] = {"app": "web", "alarm": "hook", "source": "web.1",
                                 "condition": "log", "about": 1_700_000_000.5,
                                 "origin": (42, 3), "ordinal": 0}
    values.update(change)
    return IdKey(**values)  # type: ignore[arg-type]


def test_stable_ids_are_the_same_for_the_same_position_and_differ_for_another() -> None:
    """Same key -> same id; another sequence, index, alarm, condition or ordinal ->
    another id; the form is today's `msg_` + 32 hex digits, the first 12 the time."""
    one = stable_id(key())
    assert one == stable_id(key())
    assert re.fullmatch(r"msg_[0-9a-f]{32}", one)
    assert one[4:16] == f"{1_700_000_000_500:012x}"
    others = [key(origin=(43, 3)), key(origin=(42, 4)), key(alarm="mail"),
              key(condition="rate"), key(ordinal=1)]
    ids = {stable_id(k) for k in others}
    assert one not in ids
    assert len(ids) == len(others)
    # A line-driven id does not depend on the source (the position names the line).
    assert stable_id(key(source="web.2")) == one


def test_time_driven_ids_follow_the_time_they_are_about() -> None:
    """A silence named by its source and last line's time: the same silence again is
    the same id; another source or another last line is another."""
    silence = key(origin=None, condition="silence", about=1_700_000_100.0)
    assert stable_id(silence) == stable_id(key(origin=None, condition="silence",
                                               about=1_700_000_100.0))
    assert stable_id(silence) != stable_id(key(origin=None, condition="silence",
                                               about=1_700_000_101.0))
    assert stable_id(silence) != stable_id(key(origin=None, condition="silence",
                                               about=1_700_000_100.0, source="web.2"))


def test_random_ids_stay_the_single_node_default() -> None:
    """Single-node mode: two notifications for the same key get different ids."""
    assert random_id(key()) != random_id(key())


def rules(**change: object) -> AppRules:
    """One app's rules: a webhook `hook` and a log rule, changed as asked."""
    values: dict[str, object] = {
        "app": "web",
        "alarms": {"hook": AlarmSpec("hook", "cmd", "/bin/true", HERE)},
        "log_rules": (LogRule(("hook",), "ERROR", False, HERE),)}
    values.update(change)
    return AppRules(**values)  # type: ignore[arg-type]


def records(*lines: str, at: float = 1_700_000_000.0) -> list[Record]:
    """Records of `web` from web.1, a second apart."""
    return [Record(int((at + i) * 1e6), None, "web", "web.1", "", "", line)
            for i, line in enumerate(lines)]


def evaluate(messages: list[tuple[int, list[Record]]], app: AppRules) -> list[Notification]:
    """What a fresh cluster-mode engine raises over the messages."""
    raised: list[Notification] = []
    engine = AlarmEngine([app], raised.append, ids=stable_id)
    for seq, batch in messages:
        engine.consume_message(seq, 1_700_000_000.0 + seq, batch)
    return raised


def test_the_same_log_replayed_raises_the_same_ids() -> None:
    """Two engines over the same messages name every notification alike; moved to other
    positions, the same lines raise other ids."""
    app = rules(freq=0.0)
    log = [(5, records("ERROR one", "fine", "ERROR two")), (6, records("ERROR three"))]
    first = evaluate(log, app)
    again = evaluate(log, app)
    assert [n.message for n in first] == ["ERROR one", "ERROR two", "ERROR three"]
    assert [n.id for n in first] == [n.id for n in again]
    assert len({n.id for n in first}) == 3
    moved = evaluate([(7, batch) for _, batch in log[:1]], app)
    assert moved[0].id != first[0].id


def test_two_conditions_of_one_line_for_one_alarm_get_two_ids() -> None:
    """A line that both matches a log rule and completes a rate for the same alarm raises
    two notifications with different ids."""
    app = rules(rate=(RateRule("hook", 1, 30.0, "ERROR", HERE),))
    raised = evaluate([(9, records("ERROR x"))], app)
    assert sorted(n.condition for n in raised) == ["log", "rate"]
    assert len({n.id for n in raised}) == 2


def test_the_warm_up_window_is_the_longest_state_any_rule_keeps() -> None:
    """The largest of alarm-freq, the rate windows, the silences and (with segfault
    rules) the backtrace wait; nothing for apps without conditions."""
    assert warmup_seconds([]) == 0.0
    assert warmup_seconds([AppRules(app="quiet", freq=99.0)]) == 0.0
    assert warmup_seconds([rules(freq=3.0)]) == 3.0
    assert warmup_seconds([rules(freq=3.0, rate=(RateRule("hook", 4, 30.0, "x", HERE),)),
                           rules(app="b", freq=10.0)]) == 30.0
    assert warmup_seconds([rules(freq=1.0, silence=(
        SilenceRule("hook", 120.0, None, HERE),))]) == 120.0
    assert warmup_seconds([rules(freq=1.0, segfault=("hook",))]) == BACKTRACE_WAIT


def test_the_floor_reads_back_what_was_written() -> None:
    """The floor's value round-trips; a value that is not one is a ClusterError."""
    from alarms.cluster import floor_value, parse_floor
    assert parse_floor(floor_value(1234, 1_700_000_000.25, "a")) == (1234, 1_700_000_000.25)
    with pytest.raises(ClusterError, match="unreadable alarms floor"):
        parse_floor(b"not json")
