"""collector/_speedups.c against its pure-Python references, and recvmmsg over loopback.

The compiled functions must return exactly what the Python ones return, including the
type of every field and the exceptions raised, on realistic input, on mutations of it and
on arbitrary input.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector import speedups
from collector.decode import crypto, text
from collector.decode import socket as socket_decoder
from collector.requestlog import RequestFields, parse_request_line, parse_request_line_py

try:
    from collector import _speedups as compiled
except ImportError:  # the test that it is in use fails; the comparisons are skipped
    compiled_module: ModuleType | None = None
else:
    compiled_module = compiled

T = TypeVar("T")
needs_compiled = pytest.mark.skipif(compiled_module is None, reason="extension not built")
MANY = settings(max_examples=1500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def outcome(function: Callable[[T], object], argument: T) -> object:
    """What a call gives: its result with the types of its parts, or the exception type."""
    try:
        result = function(argument)
    except Exception as error:  # the type is what is compared
        return ("raised", type(error))
    if isinstance(result, tuple):
        return (type(result), result, tuple(type(part) for part in result))
    return (type(result), result)


def c_parse(line: str) -> object:
    """The compiled request-line parser, bound to RequestFields."""
    assert compiled_module is not None
    return compiled_module.parse_request_line(line)


def same_parse(line: str) -> None:
    """The compiled parser and the reference agree on `line`."""
    assert outcome(c_parse, line) == outcome(parse_request_line_py, line), line


# ----------------------------------------------------------------- which one is in use


def test_the_compiled_module_is_in_use() -> None:
    """The test environment has the extension built and picked: were it silently not
    built (`pip install -e .` only warns), this fails."""
    assert speedups.COMPILED, speedups.WHY_PURE
    assert compiled_module is not None
    assert speedups.recvmmsg is compiled_module.recvmmsg
    assert speedups.split_lines is compiled_module.split_lines
    assert parse_request_line is compiled_module.parse_request_line
    # The decoders' own imports: they must take the compiled one too.
    assert vars(crypto)["crypto_open"] is compiled_module.crypto_open
    assert crypto.CryptoDecoder._open is compiled_module.crypto_open
    assert vars(socket_decoder)["split_lines"] is compiled_module.split_lines


def test_pure_python_is_chosen_when_forced() -> None:
    """COLLECTOR_PURE_PYTHON=1 picks every pure-Python function, and start-up says so."""
    code = ("from collector import speedups, requestlog\n"
            "from collector.decode import text\n"
            "assert not speedups.COMPILED\n"
            "assert speedups.split_lines is text.split_lines\n"
            "assert speedups.recvmmsg is speedups._recvmmsg_py\n"
            "assert speedups.crypto_open is speedups._crypto_open_py\n"
            "assert requestlog.parse_request_line is requestlog.parse_request_line_py\n"
            "speedups.log_start_up()\n")
    env = {**os.environ, "COLLECTOR_PURE_PYTHON": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "speedups_not_compiled" in done.stdout + done.stderr
    assert "COLLECTOR_PURE_PYTHON" in done.stdout + done.stderr


# ------------------------------------------------------------------ parse_request_line

METHODS = st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
NUMBER = st.one_of(
    st.integers(0, 10**6).map(str),
    st.integers(0, 10**40).map(str),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", "0", "007", " 5", "5 ", "+5", "-0", "1_000", "1__0", "٣", "²",
                     "\u00a05", "5\t", "1" * 400, "9" * 5000, "1e3", "0x1f",
                     "999999999999999", "1000000000000000", "9007199254740993"]),
)
WORD = st.text(alphabet=st.characters(codec="latin-1", exclude_characters=" "), max_size=12)
ANY_TEXT = st.text(max_size=20)


@st.composite
def request_lines(draw: st.DrawFn) -> str:
    """A uWSGI request line as core/logging.c writes it, its numbers and words drawn
    from realistic and odd values."""
    memory = draw(st.sampled_from(["", "{address space usage: 1 bytes/0MB} "
                                       "{rss usage: 2 bytes/0MB} "]))
    pid = draw(NUMBER)
    host = draw(st.sampled_from(["10.0.0.1", "::1", ""]))
    user = draw(st.sampled_from(["", "bob", "é"]))
    vars_ = draw(st.sampled_from(["{34 vars in 512 bytes}", "{0 vars in 0 bytes}"]))
    date = draw(st.sampled_from(["Tue Nov 24 20:00:00 2026", "Wed Jan  1 00:00:00 2025",
                                 "short date"]))
    method = draw(st.one_of(METHODS, WORD))
    path = draw(st.one_of(st.sampled_from(["/", "/x?a=b", "/a b c", ""]), ANY_TEXT,
                          st.text(alphabet=st.characters(codec="latin-1"), max_size=30)))
    size = draw(NUMBER)
    elapsed = draw(NUMBER)
    unit = draw(st.sampled_from(["msecs", "micros", "secs", "msecs "]))
    via = draw(st.sampled_from(["", "via sendfile ", "via route ", "via "]))
    proto = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "", "HTTP/2"]))
    status = draw(st.one_of(st.sampled_from(["200", "502", "200))", ")", "2 00"]), NUMBER))
    tail = draw(st.sampled_from([" 1 headers in 45 bytes (1 switches on core 0)", "",
                                 " x"]))
    return (f"{memory}[pid: {pid}|app: 0|req: 1/1] {host} ({user}) {vars_} [{date}] "
            f"{method} {path} => generated {size} bytes in {elapsed} {unit} {via}"
            f"({proto} {status}){tail}")


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """A line with a few cuts, insertions and replacements anywhere in it."""
    line = draw(base)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(line)))
        kind = draw(st.sampled_from(["cut", "insert", "replace"]))
        piece = draw(st.one_of(st.sampled_from([" ", "|", "]", "[pid: ", " => generated ",
                                                " bytes} [", ")", "via", "\0", "\udc80",
                                                "\u20ac", "\U0001f600"]), ANY_TEXT))
        end = draw(st.integers(at, min(len(line), at + 20)))
        if kind == "cut":
            line = line[:at] + line[end:]
        elif kind == "insert":
            line = line[:at] + piece + line[at:]
        else:
            line = line[:at] + piece + line[end:]
    return line


GOOD = ("[pid: 5644|app: 0|req: 1/1] 127.0.0.1 () {24 vars in 250 bytes} "
        "[Tue Nov 24 22:40:03 2026] GET /ghi?a=b => generated 3 bytes in 7 msecs "
        "(HTTP/1.1 200) 1 headers in 45 bytes (1 switches on core 0)")


@needs_compiled
def test_parses_the_usual_line_as_the_reference() -> None:
    """A real uWSGI line gives the same RequestFields, field types included."""
    fields = c_parse(GOOD)
    assert isinstance(fields, RequestFields)
    assert fields == parse_request_line_py(GOOD)
    same_parse(GOOD)
    same_parse(GOOD.replace("7 msecs", "2500 micros via sendfile"))


@needs_compiled
def test_huge_elapsed_raises_as_the_reference_does() -> None:
    """An elapsed time past a double's range raises OverflowError in both (float(int))."""
    line = GOOD.replace(" 7 msecs", " " + "9" * 400 + " msecs")
    with pytest.raises(OverflowError):
        parse_request_line_py(line)
    same_parse(line)
    same_parse(line.replace("msecs", "micros"))
    same_parse(GOOD.replace(" 7 msecs", " " + "9" * 300 + " micros"))


@needs_compiled
@MANY
@given(request_lines())
@example(GOOD)
@example(GOOD.replace("] GET", "]  GET"))
@example(GOOD.replace("] GET /ghi?a=b =>", "] GET =>"))
@example(GOOD.replace("] GET /ghi?a=b =>", "]  =>"))
@example(GOOD.replace("] GET /ghi?a=b =>", "] =>"))  # the request would start past the arrow
@example(GOOD.replace("2026] GET /ghi?a=b =>", "2026 =>") + "] x")
def test_realistic_lines_parse_as_the_reference(line: str) -> None:
    """Request lines built from realistic and odd parts parse the same."""
    same_parse(line)


@needs_compiled
@MANY
@given(mutated(request_lines()))
def test_mutated_lines_parse_as_the_reference(line: str) -> None:
    """Request lines with cuts, insertions and replacements parse the same."""
    same_parse(line)


@needs_compiled
@MANY
@given(st.one_of(st.text(max_size=300), st.text(max_size=300).map(lambda t: "[pid: " + t),
                 st.text(alphabet=st.characters(codec="latin-1"), max_size=300)
                 .map(lambda t: "[pid: " + t)))
def test_arbitrary_text_parses_as_the_reference(line: str) -> None:
    """Any text, wide or one byte per character, parses the same."""
    same_parse(line)


@needs_compiled
def test_parse_refuses_what_is_not_text() -> None:
    """Bytes are not a line: TypeError, as the reference raises on them."""
    with pytest.raises(TypeError):
        c_parse(GOOD.encode())  # type: ignore[arg-type]


# ----------------------------------------------------------------------- split_lines

PIECES = st.sampled_from([b"\n", b"\r", b"\r\n", b"\0", b"", b" ", b"a", b"line",
                          "é€😀".encode(), b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82",
                          b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\\x00"])


@needs_compiled
@MANY
@given(st.one_of(
    st.binary(max_size=300),
    st.lists(PIECES, max_size=30).map(b"".join),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.one_of(PIECES, st.text(max_size=10).map(
        lambda t: t.encode("utf-8", "surrogatepass"))), max_size=20).map(b"".join),
))
@example(b"")
@example(b"\n")
@example(b"\r\r\n\r")
@example(b"a\0b\n\xff")
def test_split_lines_as_the_reference(payload: bytes) -> None:
    """Any payload, UTF-8 or not, splits into the same lines with the same escape count."""
    assert compiled_module is not None
    assert outcome(compiled_module.split_lines, payload) == outcome(text.split_lines, payload)


@needs_compiled
def test_split_lines_refuses_text() -> None:
    """A str is not a payload: TypeError (the reference fails on it too, with an
    AttributeError; mypy keeps both from being called so)."""
    assert compiled_module is not None
    with pytest.raises(TypeError):
        compiled_module.split_lines("a\nb")


# --------------------------------------------------------------------------- recvmmsg

RECEIVERS = [pytest.param(speedups._recvmmsg_py, id="pure"),
             pytest.param(compiled_module.recvmmsg if compiled_module else None, id="c",
                          marks=needs_compiled)]
Receive = Callable[[int, int, int], list[tuple[bytes, str]]]


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(params=[pytest.param((socket.AF_INET, "127.0.0.1"), id="ipv4"),
                        pytest.param((socket.AF_INET6, "::1"), id="ipv6",
                                     marks=pytest.mark.skipif(not _has_ipv6(),
                                                              reason="no IPv6 loopback"))])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[socket.socket, socket.socket, str]]:
    """A non-blocking UDP receiver and a sender, both on one loopback family."""
    family, host = request.param
    receiver = socket.socket(family, socket.SOCK_DGRAM)
    sender = socket.socket(family, socket.SOCK_DGRAM)
    receiver.bind((host, 0))
    receiver.setblocking(False)
    sender.connect(receiver.getsockname()[:2])
    yield receiver, sender, host
    receiver.close()
    sender.close()


def _wait(sock: socket.socket) -> None:
    readable, _, _ = select.select([sock], [], [], 5)
    assert readable, "nothing arrived within 5 s"


@pytest.mark.parametrize("receive", RECEIVERS)
def test_recvmmsg_reads_every_waiting_datagram(
        receive: Receive, pair: tuple[socket.socket, socket.socket, str]) -> None:
    """Several datagrams in one call, in order, with the sender's numeric host; then
    nothing waiting gives []."""
    receiver, sender, host = pair
    assert receive(receiver.fileno(), 8, 100) == []
    payloads = [b"first", b"", b"x" * 99, "é".encode()]
    for payload in payloads:
        sender.send(payload)
    _wait(receiver)
    got = receive(receiver.fileno(), 8, 100)
    assert got == [(payload, host) for payload in payloads]
    assert receive(receiver.fileno(), 8, 100) == []
    # Other counts and sizes between calls (the compiled one keeps its buffers).
    for payload in (b"abcdef", b"ghijkl", b"mnopqr"):
        sender.send(payload)
    _wait(receiver)
    assert receive(receiver.fileno(), 1, 4) == [(b"abcd", host)]
    assert receive(receiver.fileno(), 300, 70000) == [(b"ghijkl", host), (b"mnopqr", host)]
    assert receive(receiver.fileno(), 2, 3) == []
    assert receiver.fileno() >= 0  # the fd is still the socket's


@pytest.mark.parametrize("receive", RECEIVERS)
def test_recvmmsg_takes_at_most_max_count_and_cuts_long_datagrams(
        receive: Receive, pair: tuple[socket.socket, socket.socket, str]) -> None:
    """At most max_count per call, the rest on the next; a datagram longer than max_size
    arrives cut to max_size bytes."""
    receiver, sender, host = pair
    for index in range(5):
        sender.send(bytes([65 + index]) * (10 + index))
    _wait(receiver)
    first = receive(receiver.fileno(), 3, 11)
    assert first == [(b"A" * 10, host), (b"B" * 11, host), (b"C" * 11, host)]
    assert receive(receiver.fileno(), 3, 11) == [(b"D" * 11, host), (b"E" * 11, host)]
    assert receive(receiver.fileno(), 3, 11) == []


@pytest.mark.parametrize("receive", RECEIVERS)
def test_recvmmsg_raises_on_a_closed_or_wrong_fd(receive: Receive) -> None:
    """A closed fd, or one that is not a socket, raises OSError; bad counts ValueError."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = sock.fileno()
    sock.close()
    with pytest.raises(OSError):  # noqa: PT011 - errno differs: EBADF
        receive(fd, 4, 100)
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(OSError):  # noqa: PT011 - ENOTSOCK
            receive(read_end, 4, 100)
    finally:
        os.close(read_end)
        os.close(write_end)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(ValueError, match="at least 1"):
            receive(sock.fileno(), 0, 100)
        with pytest.raises(ValueError, match="at least 1"):
            receive(sock.fileno(), 4, 0)


@needs_compiled
def test_recvmmsg_shares_one_host_string_per_sender(
        pair: tuple[socket.socket, socket.socket, str]) -> None:
    """A burst from one sender carries one host string object (less to allocate and to
    hash downstream)."""
    assert compiled_module is not None
    receiver, sender, _ = pair
    for _ in range(4):
        sender.send(b"x")
    _wait(receiver)
    got = compiled_module.recvmmsg(receiver.fileno(), 8, 10)
    assert len(got) == 4
    assert len({id(host) for _, host in got}) == 1
