"""Query and body checking for the API, byte-fed: every value either parses or is refused
with a message naming its parameter; none raises."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from alarms.api import parse_list_params, parse_retry_body
from collector.api.params import (
    MAX_ID,
    LogsRequest,
    names_problem,
    parse_logs_params,
    shown,
)
from collector.query import matcher
from collector.record import Record

NAMES = st.sampled_from(["app", "source", "since", "until", "regex", "status", "after",
                         "limit", "n", "follow", "state", "x"])


@settings(deadline=None)  # a loaded machine must not fail a pure function
@given(st.dictionaries(NAMES, st.text(max_size=40) | st.integers().map(str), max_size=6))
def test_logs_params_parse_or_name_the_parameter(params: dict[str, str]) -> None:
    """Any query: a request whose filters can run on a record, or an error naming one of
    the parameters given."""
    result = parse_logs_params(params)
    if isinstance(result, str):
        assert any(result.startswith(f"{name}:") or repr(name) in result for name in params)
        return
    assert isinstance(result, LogsRequest)
    matcher(result.query)(Record(1, None, "a", "s", "h", "socket", "line"))
    assert result.query.after is None or 0 <= result.query.after <= MAX_ID


@pytest.mark.parametrize(("raw", "exact", "klass", "hits"), [
    ("503", 503, None, [503]), ("5xx", None, 5, [500, 503, 599]), ("2XX", None, 2, [200, 204]),
])
def test_status_is_a_code_or_a_class(raw: str, exact: int | None, klass: int | None,
                                     hits: list[int]) -> None:
    """`status=503` filters one code and `status=5xx` a class (the console's 5xx button);
    a line without a status is in no class."""
    result = parse_logs_params({"status": raw})
    assert isinstance(result, LogsRequest)
    assert (result.query.status, result.query.status_class) == (exact, klass)
    match = matcher(result.query)
    for status in (None, 200, 204, 404, 500, 503, 599):
        line = Record(1, None, "a", "s", "h", "socket", "x", status=status)
        assert match(line) == (status in hits), status


@pytest.mark.parametrize("raw", ["5yy", "xx", "0xx", "55xx"])
def test_a_bad_status_names_the_parameter(raw: str) -> None:
    """Neither a code nor a class: a 400 that says what is expected."""
    result = parse_logs_params({"status": raw})
    assert isinstance(result, str)
    assert result.startswith("status:")
    assert "5xx" in result


@settings(deadline=None)  # a loaded machine must not fail a pure function
@given(st.dictionaries(NAMES, st.text(max_size=40) | st.integers().map(str), max_size=6))
def test_alarm_list_params_parse_or_name_the_parameter(params: dict[str, str]) -> None:
    """Any query to /v1/alarms: (state, app, limit), or an error naming a parameter."""
    result = parse_list_params(params)
    if isinstance(result, str):
        assert any(result.startswith(f"{name}:") or repr(name) in result for name in params)
    else:
        assert 1 <= result[2] <= 10_000


def test_repeated_parameter_is_refused() -> None:
    """A parameter given twice is ambiguous: refused, by name."""
    assert names_problem(MultiDict([("app", "a"), ("app", "b")]), {"app"}) == \
        "app: given more than once"


def test_unknown_parameters_are_listed() -> None:
    """Every unknown name is quoted (up to five), with what the endpoint takes."""
    problem = names_problem({"apq": "", "sorce": ""}, {"app", "source"})
    assert problem == "unknown parameters 'apq', 'sorce'; this endpoint takes app, source"


def test_long_values_are_cut_in_messages() -> None:
    """A 100 kB value is not echoed back whole."""
    assert len(shown("x" * 100_000)) < 80


@pytest.mark.parametrize(("body", "error"), [
    (None, "body:"),
    ([], "body:"),
    ({"ids": []}, "ids:"),
    ({"ids": [1]}, "ids:"),
    ({"ids": ["a"] * 1001}, "ids: at most 1000"),
    ({"dead": "yes"}, "dead: expected true"),
    ({"dead": True, "ids": ["a"]}, "ids:"),
    ({"ids": ["a"], "because": "x"}, "unknown field 'because'"),
])
def test_bad_retry_bodies_name_the_field(body: Any, error: str) -> None:
    """Each wrong shape of the retry body says which field is wrong."""
    result = parse_retry_body(body)
    assert isinstance(result, str)
    assert result.startswith(error)


def test_good_retry_bodies() -> None:
    """Ids, or every dead letter."""
    assert parse_retry_body({"ids": ["msg_1"]}) == ["msg_1"]
    assert parse_retry_body({"dead": True}) is None
