"""Heroku router lines parsed into fields, fed text: documented lines and fuzzing."""

from __future__ import annotations

from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode.logplex import Frame
from collector.decode.result import Lines
from collector.ingest import Ids, Ingest, Origin
from collector.listen.drain_records import FORMAT, FrameIds, frames_to_lines
from collector.record import Record
from collector.routerlog import pairs, parse_router_line
from collector.store.base import Store

INFO = ('at=info method=GET path="/cart?x=1" host=shop.herokuapp.com '
        'request_id=5d3c2f7e-1f7b-4a44-9c3e-1d2a5b1e7c01 fwd="203.0.113.9" dyno=web.1 '
        'connect=1ms service=12ms status=200 bytes=1234 protocol=https')
H12 = ('at=error code=H12 desc="Request timeout" method=GET path="/slow" '
       'host=shop.herokuapp.com request_id=8601b555-6a83-4c12-8269-97c8e32cdb22 '
       'fwd="204.204.204.204" dyno=web.1 connect=0ms service=30000ms status=503 bytes=0 '
       'protocol=https')
# Heroku's H10 example: the router could not fill dyno, connect, service and bytes.
H10 = ('at=error code=H10 desc="App crashed" method=GET path="/" host=myapp.herokuapp.com '
       'fwd=17.17.17.17 dyno= connect= service= status=503 bytes=')


def test_info_line_fields() -> None:
    """Method, path, status, service and connect ms, bytes, dyno, request id."""
    fields = parse_router_line(INFO)
    assert fields is not None
    assert (fields.at, fields.method, fields.path, fields.status) == ("info", "GET",
                                                                      "/cart?x=1", 200)
    assert (fields.service, fields.connect, fields.size) == (12.0, 1.0, 1234)
    assert (fields.dyno, fields.code, fields.protocol) == ("web.1", None, "https")
    assert fields.request_id == "5d3c2f7e-1f7b-4a44-9c3e-1d2a5b1e7c01"


def test_error_line_with_code_and_quoted_desc() -> None:
    """`code=` and the quoted `desc=` with its space."""
    fields = parse_router_line(H12)
    assert fields is not None
    assert (fields.code, fields.desc, fields.status, fields.service) == (
        "H12", "Request timeout", 503, 30000.0)


def test_empty_fields_are_none() -> None:
    """`dyno= connect= service= bytes=` (H10) give None, not zero."""
    fields = parse_router_line(H10)
    assert fields is not None
    assert (fields.dyno, fields.connect, fields.service, fields.size) == (None, None, None,
                                                                         None)
    assert fields.code == "H10"


def test_other_lines_are_not_router_lines() -> None:
    """A dyno's line, or an `at=` line with neither method nor status, is None."""
    assert parse_router_line("State changed from up to crashed") is None
    assert parse_router_line("at=info msg=hello") is None
    assert parse_router_line("") is None


def test_pairs_skips_words_and_takes_first_of_a_key() -> None:
    """Words without `=` are skipped; an unterminated quote runs to the end."""
    assert pairs('junk at=info status=200 status=500 path="/a b') == {
        "at": "info", "status": "200", "path": "/a b"}


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_is_none(text: str) -> None:
    """The parser is total over text, with and without the `at=` start."""
    for line in (text, "at=" + text, "at=error code=H12 " + text):
        fields = parse_router_line(line)
        assert fields is None or fields.method is not None or fields.status is not None


class Kept:
    """A store that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def append(self, records: list[Record]) -> bool:
        """Take every record."""
        self.records.extend(records)
        return True


def records_of(frames: list[Frame], app: str = "shop", host: str = "10.0.0.9",
               source: str = "heroku") -> list[Record]:
    """The records a drain's frames become, through ingest as the drain hands them on."""
    kept = Kept()
    ingest = Ingest(Ids(), cast(Store, kept))
    taken, failed = ingest.accept_many(Origin("drain", FORMAT, app, source),
                                       frames_to_lines(frames, app, host, source))
    assert (taken, failed) == (True, {})
    return kept.records


def test_drain_frames_become_records_with_request_columns_for_router_lines() -> None:
    """Router lines fill the record's request columns, as uWSGI request lines do; app
    from the drain, source from PROCID, emitted_at from the frame; a frame without PROCID
    gets the default source; ids increase along the POST."""
    frames = [Frame(INFO, 158, 1354257929.0, "host", "heroku", "router"),
              Frame("hello", 190, 1354257930.0, "host", "app", "web.1"),
              Frame("no header"),
              Frame("[pid: 7|app: 0|req: 1/1] 1.2.3.4 () {30 vars in 300 bytes} "
                    "[Tue Dec  1 03:00:00 2026] GET /x => generated 5 bytes in 3 msecs "
                    "(HTTP/1.1 502) 2 headers in 64 bytes (1 switches on core 0)",
                    190, 1354257931.0, "host", "app", "web.1")]
    records = records_of(frames)
    assert [(r.app, r.source, r.host, r.emitted_at, r.format) for r in records] == [
        ("shop", "router", "10.0.0.9", 1354257929.0, "logplex"),
        ("shop", "web.1", "10.0.0.9", 1354257930.0, "logplex"),
        ("shop", "heroku", "10.0.0.9", None, "logplex"),
        ("shop", "web.1", "10.0.0.9", 1354257931.0, "logplex")]
    assert [r.id for r in records] == sorted({r.id for r in records})
    router = records[0]
    assert (router.method, router.path, router.status, router.msecs, router.size) == (
        "GET", "/cart?x=1", 200, 12.0, 1234)
    assert records[1].status is None
    assert (records[3].method, records[3].status, records[3].pid) == ("GET", 502, 7)


def test_router_lines_from_any_listener_fill_request_columns() -> None:
    """A router line relayed by syslog (source `router`) fills them too; the same text
    from another source is a plain line."""
    kept = Kept()
    ingest = Ingest(Ids(), cast(Store, kept))
    origin = Origin("syslog", "syslog", "shop", "heroku")
    ingest.accept(origin, "10.0.0.9", Lines([H12], "shop", "router", 1.0))
    ingest.accept(origin, "10.0.0.9", Lines([H12], "shop", "web.1", 1.0))
    assert [r.status for r in kept.records] == [503, None]


def test_router_extras_in_json() -> None:
    """The API's JSON of a router line has dyno, code, connect and request_id."""
    (record,) = records_of([Frame(H12, 158, 1.0, "host", "heroku", "router")])
    doc = record.to_json()
    assert (doc["status"], doc["msecs"], doc["dyno"], doc["code"], doc["connect"]) == (
        503, 30000.0, "web.1", "H12", 0.0)
    assert doc["request_id"] == "8601b555-6a83-4c12-8269-97c8e32cdb22"
    other = Record(2, None, "shop", "web.1", "h", "logplex", H12).to_json()
    assert "code" not in other


def test_frame_ids_forget_the_oldest_past_capacity() -> None:
    """The de-duplication memory is bounded; the oldest frame ids go first."""
    ids = FrameIds(3)
    for n in range(5):
        ids.add(("shop", f"f{n}"))
    assert len(ids) == 3
    assert ("shop", "f0") not in ids
    assert ("shop", "f4") in ids
    assert ("other", "f4") not in ids
    assert ids.forgotten == 2
