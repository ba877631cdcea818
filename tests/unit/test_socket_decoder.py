"""The logsocket decoder and the line splitting both formats share."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from collector.config.model import LOOPBACK_NETWORKS
from collector.decode.result import Dropped, Lines
from collector.decode.socket import AllowList, SocketDecoder, parse_socket_payload
from collector.decode.text import split_lines


def test_prefix_names_app_and_source() -> None:
    """`APP/SOURCE:` then the message, as the shipper configures logsocket."""
    result = parse_socket_payload(b"shop/web.1:[pid: 1|app: 0|req: 1/1] hi\n")
    assert result == Lines(["[pid: 1|app: 0|req: 1/1] hi"], "shop", "web.1", None, 0)


def test_no_prefix_leaves_defaults_to_the_listener() -> None:
    """A bare message carries no app or source."""
    result = parse_socket_payload(b"just a line")
    assert isinstance(result, Lines)
    assert (result.app, result.source, result.lines) == (None, None, ["just a line"])


def test_a_space_after_the_prefix_is_not_part_of_the_line() -> None:
    """`APP/SOURCE: message` and `APP/SOURCE:message` give the same line."""
    assert parse_socket_payload(b"a/b: x") == parse_socket_payload(b"a/b:x")


def test_empty_and_nul() -> None:
    """Empty payloads are dropped; NUL bytes are kept visibly escaped."""
    assert parse_socket_payload(b"\n\n") == Dropped("empty")
    result = parse_socket_payload(b"a\0b")
    assert isinstance(result, Lines)
    assert result.lines == ["a\\x00b"]


def test_allow_list() -> None:
    """Only senders in the allowed networks get through."""
    decoder = SocketDecoder([*LOOPBACK_NETWORKS, ipaddress.ip_network("10.1.0.0/16")])
    assert isinstance(decoder.decode(b"x", "127.0.0.1", 0), Lines)
    assert isinstance(decoder.decode(b"x", "10.1.2.3", 0), Lines)
    assert decoder.decode(b"x", "10.2.0.1", 0) == Dropped("not_allowed")
    assert decoder.decode(b"x", "::1", 0) != Dropped("not_allowed")
    assert "not-an-address" not in AllowList(LOOPBACK_NETWORKS)


def test_split_lines_drops_blank_lines_and_carriage_returns() -> None:
    """CRLF endings and blank lines do not make records."""
    assert split_lines(b"a\r\n\r\nb\n") == (["a", "b"], 0)
    assert split_lines(b"") == ([], 0)


@given(st.binary(max_size=400))
def test_fuzz_socket_payload(data: bytes) -> None:
    """Any payload decodes to lines without NUL or newlines, or is dropped as empty."""
    result = parse_socket_payload(data)
    if isinstance(result, Dropped):
        assert result.reason == "empty"
        return
    for line in result.lines:
        assert line
        assert "\n" not in line
        assert "\0" not in line
