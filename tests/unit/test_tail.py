"""`collector tail`'s printing: control characters from senders never reach the terminal."""

from __future__ import annotations

import io
import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.client.tail import Printer, escape_controls, format_line
from collector.record import Record

# Everything a terminal may act on: C0 but tab, DEL, C1, line separators, bidi controls.
UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
HOSTILE = "ok \x1b[2J\x1b]0;owned\x07 \x9b31m \r\n \u202eevil\x00 \x7f"


def record(line: str, app: str = "shop", source: str = "web.1") -> Record:
    """A record with the given sender-supplied fields."""
    return Record(1, 1732472400.5, app, source, "h", "socket", line)


def test_line_app_and_source_are_escaped() -> None:
    """ESC, BEL, CR, LF, NUL, DEL, 8-bit CSI and a bidi override are printed as escapes."""
    printed = format_line(record(HOSTILE, app="a\x1b[31m", source="w\r1"), colour=False)
    assert UNSAFE.search(printed) is None
    assert printed.endswith(
        r"a\x1b[31m[w\r1]: ok \x1b[2J\x1b]0;owned\x07 \x9b31m \r\n \u202eevil\x00 \x7f")


def test_colour_keeps_only_its_own_escapes() -> None:
    """With colour, the escapes tail adds are there and none from the line."""
    printed = format_line(record("\x1b[5mblink"), colour=True)
    assert "\x1b[5m" not in printed
    assert r"\x1b[5mblink" in printed


def test_tab_and_text_are_left_alone() -> None:
    """Tabs and ordinary Unicode need no escape."""
    assert escape_controls("a\tb é 日本 🙂") == "a\tb é 日本 🙂"


def test_raw_prints_the_line_as_it_came() -> None:
    """--raw: exactly the sender's bytes."""
    assert format_line(record(HOSTILE), colour=False, raw=True).endswith(": " + HOSTILE)


def test_json_output_is_escaped_and_parses_to_the_same_record() -> None:
    """--json: DEL, C1 and bidi controls (which json.dumps leaves) become \\u escapes."""
    out = io.StringIO()
    Printer(out, as_json=True, colour=False).write(record(HOSTILE).to_json())
    text = out.getvalue()
    assert UNSAFE.search(text.rstrip("\n")) is None
    assert json.loads(text)["line"] == HOSTILE


def test_json_raw_is_unescaped() -> None:
    """--json --raw keeps json.dumps's own output."""
    out = io.StringIO()
    Printer(out, as_json=True, colour=False, raw=True).write(record("\x9b").to_json())
    assert "\x9b" in out.getvalue()


@settings(deadline=None)  # a loaded machine must not fail a pure function
@given(st.text(), st.text(), st.text())
def test_no_text_reaches_the_terminal_unescaped(line: str, app: str, source: str) -> None:
    """Whatever a sender puts in app, source or line, the printed line holds no control
    character, and the JSON form still parses to the same record."""
    rec = record(line, app=app, source=source)
    assert UNSAFE.search(format_line(rec, colour=False)) is None
    out = io.StringIO()
    Printer(out, as_json=True, colour=False).write(rec.to_json())
    assert UNSAFE.search(out.getvalue()[:-1]) is None
    assert json.loads(out.getvalue()) == rec.to_json()


def test_a_sender_clock_out_of_range_does_not_stop_the_tail() -> None:
    """An emitted_at no calendar can hold is printed as a number."""
    printed = format_line(Record(1, 1e300, "a", "s", "h", "socket", "x"), colour=False)
    assert printed.startswith("@1e+300 ")
