"""`alarm-heroku`: its config line, the Heroku error lines it knows, and the engine
raising it with code, description, path and dyno in the facts."""

from __future__ import annotations

import pytest

from alarms.conditions.heroku import may_be_heroku_error, parse_heroku_error
from alarms.engine import AlarmEngine
from alarms.notification import Notification
from collector.errors import ConfigError
from tests.unit.alarm_support import record, rules_from
from tests.unit.test_routerlog import H10, H12, INFO

ALARMS = "alarm = page cmd:true\nalarm = hook webhook:http://127.0.0.1:1/x\n"


def engine_for(body: str) -> tuple[AlarmEngine, list[Notification]]:
    """An engine for app `shop` with ALARMS and `body`, collecting what it fires."""
    fired: list[Notification] = []
    return AlarmEngine([rules_from(ALARMS + body)], fired.append, clock=lambda: 1000.0), fired


def test_config_line() -> None:
    """Codes are upper-cased (`crashed` kept), repeated ones once; lines may repeat."""
    rules = rules_from(ALARMS + "alarm-heroku = page h12, H12,R14,Crashed\n"
                                "heroku-alarm = hook H10\n")
    assert [(r.alarms, r.codes) for r in rules.heroku] == [
        (("page",), ("H12", "R14", "crashed")), (("hook",), ("H10",))]
    assert rules.has_conditions


@pytest.mark.parametrize(("line", "message"), [
    ("alarm-heroku = page", "expected .ALARM"),
    ("alarm-heroku = page H1", "unknown Heroku code"),
    ("alarm-heroku = page X12", "unknown Heroku code"),
    ("alarm-heroku = nobody H12", "unknown alarm"),
])
def test_config_errors(line: str, message: str) -> None:
    """A bad line names what is wrong."""
    with pytest.raises(ConfigError, match=message):
        rules_from(ALARMS + line + "\n")


def test_recognised_lines() -> None:
    """Router errors, runtime errors and crashes, with what each tells."""
    error = parse_heroku_error(H12, "router")
    assert error is not None
    assert (error.code, error.desc, error.path, error.dyno) == ("H12", "Request timeout",
                                                                "/slow", "web.1")
    error = parse_heroku_error(H10, "router")
    assert error is not None
    assert (error.code, error.dyno) == ("H10", None)
    error = parse_heroku_error("Error R14 (Memory quota exceeded)", "web.2")
    assert error is not None
    assert (error.code, error.desc, error.path, error.dyno) == (
        "R14", "Memory quota exceeded", None, "web.2")
    error = parse_heroku_error("State changed from up to crashed", "web.1")
    assert error is not None
    assert (error.code, error.dyno) == ("crashed", "web.1")
    for line in (INFO, "State changed from starting to up", "Error in my code", "code=1"):
        assert parse_heroku_error(line, "web.1") is None


def test_prefilter_passes_every_recognised_line() -> None:
    """The cheap test is true for every line that parses (so none is missed)."""
    for line in (H12, H10, "Error R15 (Memory quota vastly exceeded)",
                 "State changed from starting to crashed"):
        assert may_be_heroku_error(line)
        assert parse_heroku_error(line, "web.1") is not None


def test_engine_raises_alarm_with_facts() -> None:
    """An H12 router line fires the alarm that names H12, with the facts; a line of a
    code no rule names fires nothing."""
    engine, fired = engine_for("alarm-heroku = page H12,crashed\nalarm-heroku = hook R14\n")
    engine.consume([record(INFO, 1000.0, source="router"),
                    record(H10, 1000.0, source="router")])
    assert fired == []
    engine.consume([record(H12, 1000.0, source="router")])
    (note,) = fired
    assert (note.alarm, note.condition, note.source, note.message) == ("page", "heroku",
                                                                       "router", H12)
    assert note.facts == {"code": "H12", "desc": "Request timeout", "path": "/slow",
                          "dyno": "web.1"}
    engine.consume([record("Error R14 (Memory quota exceeded)", 1001.0, source="web.1"),
                    record("State changed from up to crashed", 1002.0, source="web.2")])
    assert [(n.alarm, n.facts["code"], n.facts["dyno"]) for n in fired[1:]] == [
        ("hook", "R14", "web.1"), ("page", "crashed", "web.2")]


def test_engine_batch_path_raises_it_too() -> None:
    """A run of records through the engine's batch path (with a log rule's prefilter)
    raises the same alarm as one record at a time."""
    engine, fired = engine_for("alarm-heroku = page H12\nlog-alarm = hook never-xyzzy\n")
    engine.consume([record(INFO, 1000.0, source="router"),
                    record(H12, 1000.0, source="router"),
                    record("hello", 1000.0, source="web.1")])
    assert [(n.alarm, n.facts["code"]) for n in fired] == [("page", "H12")]


def test_repeats_on_one_path_are_one_message_to_alarm_freq() -> None:
    """H12s on the same path and dyno differ by request id, yet alarm-freq holds back
    the repeats (its key is code, dyno and path)."""
    engine, fired = engine_for("alarm-heroku = page H12\n")
    other = H12.replace("8601b555", "11111111")
    engine.consume([record(H12, 1000.0, source="router"),
                    record(other, 1000.5, source="router")])
    assert len(fired) == 1


def test_several_alarms_on_one_line_each_get_the_event() -> None:
    """`alarm-heroku = page,hook CODE` sends to both alarms, as `log-alarm = a,b REGEX`
    does; a code named again for one of them is not sent to it twice."""
    rules = rules_from(ALARMS + "alarm-heroku = page,hook H12\nalarm-heroku = hook H12,R14\n")
    assert [(r.alarms, r.codes) for r in rules.heroku] == [
        (("page", "hook"), ("H12",)), (("hook",), ("H12", "R14"))]
    engine, fired = engine_for("alarm-heroku = page,hook H12\nalarm-heroku = hook H12,R14\n")
    engine.consume([record(H12, 1000.0, source="router")])
    assert sorted(n.alarm for n in fired) == ["hook", "page"]


@pytest.mark.parametrize("line", ["alarm-silence = page,hook 60",
                                  "alarm-rate = page,hook 5/60 x"])
def test_one_alarm_rules_refuse_several_names_with_the_line(line: str) -> None:
    """Rules that keep per-alarm state take one name: a comma list is a ConfigError that
    names the line (it was a traceback)."""
    with pytest.raises(ConfigError, match="expected one alarm name") as caught:
        rules_from(ALARMS + line + "\n")
    assert caught.value.location is not None
