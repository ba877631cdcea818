"""The logplex-1 body parser, fed bytes: Heroku's documented frames, broken framing, and
hypothesis-made bodies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.decode.logplex import BodyError, Frame, parse_body, parse_frame, parse_timestamp

# Frames as Heroku's documentation shows them (devcenter "Log Drains", logplex's
# README.http_drains.md): the octet count includes the trailing newline.
STATE = b"<40>1 2012-11-30T06:45:29+00:00 host app web.3 - State changed from starting to up\n"
ERLANG = b"<174>1 2012-07-22T00:06:26+00:00 host erlang console - Hi from erlang\n"


def framed(*messages: bytes) -> bytes:
    """An octet-counted body of `messages`."""
    return b"".join(str(len(m)).encode() + b" " + m for m in messages)


def test_documented_frames_parse_into_fields() -> None:
    """Heroku's example body gives its message, PROCID, APP-NAME and timestamp."""
    assert framed(STATE).startswith(b"83 <40>1")
    frames = parse_body(framed(STATE, ERLANG))
    assert frames == [
        Frame("State changed from starting to up", 40, 1354257929.0, "host", "app", "web.3"),
        Frame("Hi from erlang", 174, 1342915586.0, "host", "erlang", "console"),
    ]


def test_ten_frames_of_the_logplex_example() -> None:
    """The logplex README's ten-message POST is ten frames (its Logplex-Msg-Count)."""
    body = framed(*[ERLANG] * 10)
    frames = parse_body(body)
    assert isinstance(frames, list)
    assert len(frames) == 10
    assert {f.message for f in frames} == {"Hi from erlang"}


def test_truncated_body_is_refused_whole() -> None:
    """A frame that runs past the end refuses the body: nothing of it is taken."""
    result = parse_body(framed(STATE, ERLANG)[:-5])
    assert isinstance(result, BodyError)
    assert result.reason == "truncated"


def test_bad_length_prefix_is_refused() -> None:
    """A length that is not digits, or zero, is a framing error."""
    for body in (b"x3 abc", b"0 ", b"12345678901 x", b"83" + STATE, "٣ abc".encode()):
        result = parse_body(body)
        assert isinstance(result, BodyError), body
        assert result.reason == "bad_length"


def test_empty_body_and_newline_separators() -> None:
    """No frames in an empty body; a newline between frames is skipped."""
    assert parse_body(b"") == []
    frames = parse_body(framed(STATE) + b"\n" + framed(ERLANG))
    assert isinstance(frames, list)
    assert [f.procid for f in frames] == ["web.3", "console"]


def test_frame_with_odd_header_is_kept_whole() -> None:
    """A frame that is not `<PRI>1 TS HOST APP PROCID MSGID MSG` is kept as its text."""
    for text in (b"plain text line", b"<40>2 2012-11-30T06:45:29Z h a p - m", b"<999>1 x",
                 b"<40>1 too few"):
        frame = parse_frame(text)
        assert frame.message == text.decode()
        assert frame.procid is None


def test_timestamps() -> None:
    """RFC 3339 with fractions, Z or an offset; `-` and offset-less stamps are None."""
    assert parse_timestamp("2012-11-30T06:45:29.5Z") == 1354257929.5
    assert parse_timestamp("2012-11-30T07:45:29+01:00") == 1354257929.0
    assert parse_timestamp("-") is None
    assert parse_timestamp("2012-11-30T06:45:29") is None
    assert parse_timestamp("2012-13-30T06:45:29+00:00") is None


def test_invalid_utf8_is_replaced_not_refused() -> None:
    """Bytes other than UTF-8 in a message are replaced; the frame is kept."""
    frames = parse_body(framed(b"<40>1 2012-11-30T06:45:29Z host app web.1 - caf\xe9\n"))
    assert isinstance(frames, list)
    assert frames[0].message == "caf\ufffd"


headers = st.tuples(st.integers(0, 191), st.sampled_from(["web.1", "router", "-"]),
                    st.text(st.characters(blacklist_categories=["Cs"]), max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.lists(headers, max_size=8))
def test_well_formed_bodies_round_trip(items: list[tuple[int, str, str]]) -> None:
    """Any run of well-formed frames parses back into the same PROCIDs and messages."""
    messages = [f"<{pri}>1 2012-11-30T06:45:29+00:00 host app {procid} - {text}\n".encode()
                for pri, procid, text in items]
    frames = parse_body(framed(*messages))
    assert isinstance(frames, list)
    assert [(f.procid, f.message) for f in frames] == [
        (None if procid == "-" else procid, text.rstrip("\n")) for _, procid, text in items]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_frames_or_an_error(body: bytes) -> None:
    """The parser is total: arbitrary bytes never raise."""
    result = parse_body(body)
    assert isinstance(result, list | BodyError)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(1, 199))
def test_any_cut_inside_a_frame_refuses_the_body(tail: bytes, cut: int) -> None:
    """Cutting a well-formed body anywhere inside its second frame refuses it all: never
    a frame taken half, nor the first one alone."""
    body = framed(STATE, b"<40>1 2012-11-30T06:45:29Z host app web.1 - " + tail)
    cut_at = len(framed(STATE)) + min(cut, len(body) - len(framed(STATE)) - 1)
    result = parse_body(body[:cut_at])
    assert isinstance(result, BodyError)
    assert result.reason in ("truncated", "bad_length")
