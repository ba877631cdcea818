"""Hostile API parameters against a real collector: every one answered 200 or 400, and a
400 names the parameter. Property tests (hypothesis) cover every parameter of every
endpoint: /v1/logs, /v1/alarms, /v1/alarms/retry, /metrics and /healthz."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.send import send

pytestmark = pytest.mark.e2e

TOKEN = "t0ken"
CONFIG = """
[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
app = shop

[app:shop]
alarm = audit log:quiet request
log-alarm = audit ^boom
"""
LOGS = ("app", "source", "since", "until", "regex", "status", "after", "limit", "n",
        "follow")
ALARMS = ("state", "app", "limit", "n")
NO_PARAMS = ("/healthz", "/metrics", "/v1/alarms/retry")
SINCE_ERROR = ("since: expected a time (Unix seconds, ISO 8601 or a duration such as 15m), "
               "got 'nan'")
PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# What a caller may type: any text, and text shaped like the values the API expects.
VALUES = st.one_of(
    st.text(max_size=60),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.from_regex(r"-?[0-9]{1,30}(\.[0-9]*)?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "1e30", "-1", "0", "15m", "99999999999w",
                     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "a(",
                     "(a{1000}){1000}", "1", "true", "no", "dead", "pending", "%", "%ff"]),
)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector with a token, an alarm rule (so that /v1/alarms is served) and a few
    stored lines (so that queries reach SQLite), shared by the module's many requests."""
    workdir: Path = tmp_path_factory.mktemp("params")
    made = CollectorProcess(workdir, config=CONFIG, token=TOKEN)
    made.start()
    send([b"shop/web.1:GET / 200", b"shop/web.2:GET /x 500", b"shop/web.1:boom"],
         made.port("plain"))
    wait_for(lambda: len(made.get("/v1/logs")["records"]) == 3, 10, "three stored lines")
    yield made
    made.close()


def ask(collector: CollectorProcess, path: str, method: str = "GET",
        body: bytes | None = None) -> tuple[int, dict[str, Any] | None]:
    """One request: its status and JSON body. A follow stream's body is not read (it does
    not end): None."""
    conn = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=20)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        if response.getheader("Content-Type", "").startswith("application/x-ndjson"):
            return response.status, None
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, {"text": raw.decode(errors="replace")}
    finally:
        conn.close()


def query(params: dict[str, str]) -> str:
    """A query string with every name and value percent-encoded."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())


def check_answer(status: int, doc: dict[str, Any] | None, names: set[str]) -> None:
    """200, or 400 with an error that names one of `names`."""
    assert status in (200, 400), (status, doc)
    if status == 400:
        assert doc is not None
        error = doc["error"]
        assert any(error.startswith(f"{name}:") or repr(name) in error for name in names), \
            (names, error)


@pytest.mark.parametrize(("path", "error"), [
    ("/v1/logs?since=nan", SINCE_ERROR),
    ("/v1/logs?until=inf", "until: expected a time"),
    ("/v1/logs?since=99999999999999999999w", "since: '99999999999999999999w' is not "
     "between 1970"),
    ("/v1/logs?since=1e30", "since: '1e30' is not between 1970 and the year 9999"),
    ("/v1/logs?after=1e30", "after: expected a whole number from 0 to "),
    ("/v1/logs?after=99999999999999999999", "after: expected a whole number"),
    ("/v1/logs?after=4611686018427387905&follow=1", "after: expected a whole number"),
    ("/v1/logs?status=99999999999999999999", "status: expected a whole number from 100 to "
     "999, got '99999999999999999999'"),
    ("/v1/logs?limit=-1", "limit: expected a whole number from 0 to 10000, got '-1'"),
    ("/v1/logs?limit=%D9%A3", "limit: expected a whole number"),
    ("/v1/logs?n=5&limit=5", "n: the same as limit"),
    ("/v1/logs?limit=5&limit=6", "limit: given more than once"),
    ("/v1/logs?follow=maybe", "follow: expected 1, true, yes, 0, false or no"),
    ("/v1/logs?regex=" + "a" * 100_000, "regex: at most 4096 bytes, got 100000"),
    ("/v1/logs?regex=(a{1000}){1000}", "regex: invalid repetition size"),
    ("/v1/logs?regx=a", "unknown parameter 'regx'; this endpoint takes after, app,"),
    ("/v1/alarms?limit=0", "limit: expected a whole number from 1 to 10000, got '0'"),
    ("/v1/alarms?state=dying", "state: expected one of pending, delivered, dead"),
    ("/v1/alarms?stat=dead", "unknown parameter 'stat'; this endpoint takes app, limit,"),
    ("/metrics?x=1", "unknown parameter 'x'; this endpoint takes no parameters"),
    ("/healthz?x=1", "unknown parameter 'x'; this endpoint takes no parameters"),
])
def test_hostile_parameters_are_400s_naming_them(collector: CollectorProcess, path: str,
                                                 error: str) -> None:
    """The issue's examples, and their kin: 400 with a message that starts with the
    parameter's name (or quotes an unknown one)."""
    status, doc = ask(collector, path)
    assert status == 400, doc
    assert doc is not None
    assert doc["error"].startswith(error), doc["error"]


def test_unknown_parameter_on_retry_is_a_400(collector: CollectorProcess) -> None:
    """POST /v1/alarms/retry takes its arguments in the body, none in the query."""
    status, doc = ask(collector, "/v1/alarms/retry?dead=1", "POST", b'{"dead": true}')
    assert status == 400
    assert doc is not None
    assert doc["error"].startswith("unknown parameter 'dead'")


def test_a_request_line_beyond_the_limit_is_a_400(collector: CollectorProcess) -> None:
    """Past 128 KiB the HTTP parser refuses the request line itself (400, not 500)."""
    status, _ = ask(collector, "/v1/logs?regex=" + "a" * 200_000)
    assert status == 400


def test_good_parameters_still_work(collector: CollectorProcess) -> None:
    """Values of every accepted form are answered 200."""
    for path in ("/v1/logs?since=15m&until=2999-01-01T00:00:00Z&status=500&limit=0",
                 "/v1/logs?after=0&n=10&regex=%5Eboom&app=shop&source=web.1&follow=0",
                 "/v1/logs?since=1732470000.5&app=", "/v1/alarms?state=dead&n=5&app=shop",
                 "/metrics", "/healthz"):
        status, doc = ask(collector, path)
        assert status == 200, (path, doc)


@pytest.mark.parametrize("name", LOGS)
@PROPERTY
@given(value=VALUES)
def test_every_logs_parameter_is_200_or_a_400_naming_it(collector: CollectorProcess,
                                                        name: str, value: str) -> None:
    """Any value of any /v1/logs parameter: 200, or 400 whose error starts `NAME:`."""
    status, doc = ask(collector, f"/v1/logs?{query({name: value})}")
    check_answer(status, doc, {name})


@pytest.mark.parametrize("name", ALARMS)
@PROPERTY
@given(value=VALUES)
def test_every_alarms_parameter_is_200_or_a_400_naming_it(collector: CollectorProcess,
                                                          name: str, value: str) -> None:
    """Any value of any /v1/alarms parameter: 200, or 400 whose error starts `NAME:`."""
    status, doc = ask(collector, f"/v1/alarms?{query({name: value})}")
    check_answer(status, doc, {name})


@pytest.mark.parametrize("path", ["/v1/logs", "/v1/alarms"])
@PROPERTY
@given(params=st.dictionaries(st.one_of(st.sampled_from(LOGS + ALARMS), st.text(max_size=8)),
                              VALUES, max_size=5))
def test_any_mix_of_parameters_is_200_or_a_400_naming_one(
        collector: CollectorProcess, path: str, params: dict[str, str]) -> None:
    """Several parameters at once, known or not: 200, or 400 naming one of them."""
    status, doc = ask(collector, f"{path}?{query(params)}")
    check_answer(status, doc, set(params))
    known = set(LOGS if path == "/v1/logs" else ALARMS)
    if set(params) - known:
        assert status == 400


@pytest.mark.parametrize("path", NO_PARAMS)
@PROPERTY
@given(name=st.text(max_size=20), value=VALUES)
def test_endpoints_without_parameters_refuse_any(collector: CollectorProcess, path: str,
                                                 name: str, value: str) -> None:
    """/healthz, /metrics and /v1/alarms/retry take no query parameter: any is a 400
    that quotes its name."""
    method, body = ("POST", b'{"ids": ["msg_x"]}') if path.endswith("retry") else ("GET", None)
    status, doc = ask(collector, f"{path}?{query({name: value})}", method, body)
    assert status == 400
    assert doc is not None
    assert repr(name) in doc["error"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["ids", "dead", "x"]) | st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@PROPERTY
@given(body=JSON)
def test_retry_body_is_200_or_a_400_naming_the_field(collector: CollectorProcess,
                                                     body: Any) -> None:
    """Any JSON body to /v1/alarms/retry: 200, or 400 naming ids, dead, the body or an
    unknown field."""
    status, doc = ask(collector, "/v1/alarms/retry", "POST", json.dumps(body).encode())
    names = {"ids", "dead", "body"} | (set(body) if isinstance(body, dict) else set())
    check_answer(status, doc, {str(n) for n in names})
    if status == 200:
        assert doc is not None
        assert doc["retried"] == []


@PROPERTY
@given(body=st.binary(max_size=200))
def test_retry_body_of_any_bytes_is_not_a_500(collector: CollectorProcess,
                                              body: bytes) -> None:
    """Bytes that are not JSON at all: 400 naming the body."""
    status, doc = ask(collector, "/v1/alarms/retry", "POST", body)
    assert status in (200, 400), (status, doc)


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"ids": [f"msg_{i}" for i in range(1001)]}).encode(),
    json.dumps({"ids": ["x" * 201]}).encode(),
    b'{"ids": ["msg_1"], "dead": true}',
    b'{"dead": 1}',
    b"\xff\xfe",
])
def test_hostile_retry_bodies_are_400s(collector: CollectorProcess, body: bytes) -> None:
    """Nested too deep to parse, too many or too long ids, both forms, a dead that is not
    true, not UTF-8: each a 400."""
    status, doc = ask(collector, "/v1/alarms/retry", "POST", body)
    assert status == 400, doc
