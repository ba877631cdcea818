"""The syslog parser, byte-fed: RFC 5424 and RFC 3164 told apart per message, every
header field, structured data kept, BOM removed, uWSGI's rsyslog logger, bad input as a
returned error (never raised), and hypothesis fuzzing."""

from __future__ import annotations

import calendar
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config.model import LOOPBACK_NETWORKS
from collector.decode.result import Dropped, Lines
from collector.decode.syslog import SyslogError, SyslogMessage, parse_syslog
from collector.decode.syslog_lines import SyslogDecoder, syslog_lines

NOW = calendar.timegm((2026, 11, 30, 21, 0, 0, 0, 0, 0))


def parsed(data: bytes, now: float = NOW) -> SyslogMessage:
    """Parse and insist it was accepted."""
    result = parse_syslog(data, now)
    assert isinstance(result, SyslogMessage), result
    return result


def test_rfc5424_fields_and_bom() -> None:
    """RFC 5424's example 1: every field, fractional UTC timestamp, BOM removed."""
    message = parsed(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
                     b"\xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8")
    assert (message.version, message.facility, message.severity) == (1, 4, 2)
    assert message.timestamp == calendar.timegm((2003, 10, 11, 22, 14, 15)) + 0.003
    assert (message.hostname, message.app_name, message.procid, message.msgid) == (
        "mymachine.example.com", "su", None, "ID47")
    assert message.structured_data is None
    assert message.line() == "'su root' failed for lonvick on /dev/pts/8"


def test_rfc5424_structured_data_kept_verbatim_with_offset() -> None:
    """Several SD-ELEMENTs, an escaped ] inside a value, a -07:00 offset; the stored line
    starts with the structured data as sent."""
    sd = (b'[exampleSDID@32473 iut="3" eventSource="App\\]lication"]'
          b'[examplePriority@32473 class="high"]')
    message = parsed(b"<165>1 2003-10-11T22:14:15.003-07:00 host app 1234 ID47 " + sd + b" hi")
    assert message.structured_data == sd.decode()
    assert message.msg == "hi"
    assert message.procid == "1234"
    assert message.timestamp == calendar.timegm((2003, 10, 12, 5, 14, 15)) + 0.003
    assert message.line() == sd.decode() + " hi"


def test_rfc5424_structured_data_without_message() -> None:
    """No MSG at all: the line is the structured data alone."""
    message = parsed(b'<13>1 - - - - - [a@1 b="c"]')
    assert (message.timestamp, message.hostname, message.app_name) == (None, None, None)
    assert message.line() == '[a@1 b="c"]'


def test_rfc3164_with_hostname_tag_and_pid() -> None:
    """`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG` in the collector's local time."""
    message = parsed(b"<13>Nov 30 20:59:58 web1 sshd[4242]: Accepted publickey")
    assert message.version == 0
    assert (message.hostname, message.app_name, message.procid) == ("web1", "sshd", "4242")
    assert message.timestamp == time.mktime((2026, 11, 30, 20, 59, 58, 0, 0, -1))
    assert message.msg == "Accepted publickey"


def test_rfc3164_year_is_the_one_closest_to_now() -> None:
    """A December stamp received on the 1st of January belongs to the year before."""
    new_year = time.mktime((2027, 1, 1, 0, 0, 5, 0, 0, -1))
    message = parsed(b"<13>Dec 31 23:59:59 h app: x", new_year)
    assert message.timestamp == time.mktime((2026, 12, 31, 23, 59, 59, 0, 0, -1))


def test_uwsgi_rsyslog_logger_with_prefix() -> None:
    """uWSGI's `rsyslog:HOST:PORT,PREFIX` sends no HOSTNAME: PREFIX is the TAG (app)."""
    message = parsed(b"<29>Nov 30 21:00:01 shop: GET / => generated 3 bytes")
    assert (message.hostname, message.app_name) == (None, "shop")
    assert message.msg == "GET / => generated 3 bytes"


def test_uwsgi_rsyslog_logger_default_prefix() -> None:
    """Without PREFIX uWSGI sends `HOSTNAME uwsgi:`."""
    message = parsed(b"<29>Nov  3 09:00:01 vm uwsgi: spawned uWSGI worker 1")
    assert (message.hostname, message.app_name) == ("vm", "uwsgi")
    assert message.msg == "spawned uWSGI worker 1"


def test_rfc3164_with_rfc3339_stamp_as_rsyslog_forwards() -> None:
    """rsyslog's forward format puts an RFC 3339 stamp in a 3164 header."""
    message = parsed(b"<30>2026-11-30T21:00:00.5+01:00 db1 postgres[7]: ready")
    assert message.timestamp == NOW - 3600 + 0.5
    assert (message.hostname, message.app_name, message.procid) == ("db1", "postgres", "7")


def test_no_pri_or_timestamp_is_still_a_message() -> None:
    """RFC 3164 section 4.3.3: a relay takes a message without PRI as user.notice."""
    message = parsed(b"just text")
    assert (message.facility, message.severity, message.timestamp) == (1, 5, None)
    assert message.msg == "just text"


def test_bad_input_is_a_returned_error() -> None:
    """Each kind of bad header returns its reason."""
    cases = {b"": "empty", b"<192>x": "bad_pri", b"<01>x": "bad_pri", b"<abc>x": "bad_pri",
             b"<13>1 2003-13-40T00:00:00Z h a p m - x": "bad_timestamp",
             b"<13>1 - h a": "bad_header", b'<13>1 - h a p m [x a="b" msg': "bad_structured_data",
             b"<13>1 - h a p m nosd": "bad_structured_data"}
    for data, reason in cases.items():
        result = parse_syslog(data, NOW)
        assert isinstance(result, SyslogError), data
        assert result.reason == reason, data


def test_lines_take_app_source_and_time() -> None:
    """APP-NAME is the app; HOSTNAME or PROCID (`source-from`) the source; a traceback
    over several lines makes one line each."""
    data = b"<13>1 2026-11-30T21:00:00Z host1 shop web.1 - - line one\nline two\n"
    by_host = syslog_lines(data, NOW, "hostname")
    assert by_host == Lines(["line one", "line two"], "shop", "host1", NOW)
    by_proc = syslog_lines(data, NOW, "procid")
    assert isinstance(by_proc, Lines)
    assert by_proc.source == "web.1"
    assert syslog_lines(b"<13>1 - - - - - -", NOW) == Dropped("empty")


def test_decoder_refuses_senders_outside_allow() -> None:
    """Plain syslog is unauthenticated: only allowed networks are heard."""
    decoder = SyslogDecoder(LOOPBACK_NETWORKS)
    assert decoder.decode(b"<13>x", "10.1.2.3", NOW) == Dropped("not_allowed")
    assert isinstance(decoder.decode(b"<13>x", "127.0.0.1", NOW), Lines)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Any bytes give a message or an error, never an exception."""
    result = parse_syslog(data, NOW)
    assert isinstance(result, SyslogMessage | SyslogError)
    lines = syslog_lines(data, NOW)
    assert isinstance(lines, Lines | Dropped)


_NAME = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(pri=st.integers(0, 191), host=_NAME, app=_NAME, procid=_NAME, msgid=_NAME,
       msg=st.text(max_size=80).filter(lambda m: "\r" not in m and "\n" not in m),
       stamp=st.integers(0, 4_000_000_000))
def test_fuzz_rfc5424_round_trip(pri: int, host: str, app: str, procid: str,  # noqa: PLR0917
                                 msgid: str, msg: str, stamp: int) -> None:
    """A well-formed RFC 5424 message built from any fields parses back to them."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
    data = f"<{pri}>1 {when} {host} {app} {procid} {msgid} - {msg}".encode()
    message = parsed(data)
    assert (message.facility << 3 | message.severity) == pri
    assert message.timestamp == stamp
    expected = [None if v == "-" else v for v in (host, app, procid, msgid)]
    assert [message.hostname, message.app_name, message.procid, message.msgid] == expected
    assert message.msg == msg.rstrip("\r\n").replace("\0", "\\x00")
