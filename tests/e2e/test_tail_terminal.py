"""`collector tail` against a real collector: what senders put in lines reaches the
terminal as visible escapes, unless --raw."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.send import send

pytestmark = pytest.mark.e2e

CONFIG = """
[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
app = shop
"""
# Clear the screen, set the window title, then an 8-bit CSI and a bidi override.
HOSTILE = "pwn \x1b[2J\x1b]0;owned\x07 \u009b31m \u202eevil"


def test_tail_escapes_control_characters_unless_raw(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """The line arrives whole in the store; tail prints it escaped (also with --json and
    --color always), and byte for byte with --raw."""
    collector = new_collector(config=CONFIG)
    collector.start()
    send([f"shop/web.1:{HOSTILE}".encode()], collector.port("plain"))
    wait_for(lambda: collector.get("/v1/logs")["records"], 10, "the line stored")
    assert collector.get("/v1/logs")["records"][0]["line"] == HOSTILE

    for args in ((), ("--color", "always"), ("--json",)):
        done = collector.cli("tail", *args)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "\x07" not in out
        assert "\u009b" not in out
        assert "\u202e" not in out
        assert "\x1b[2J" not in out
        assert "\x1b]0;" not in out
        if args == ("--json",):
            assert json.loads(out)["line"] == HOSTILE
        else:
            assert r"pwn \x1b[2J\x1b]0;owned\x07 \x9b31m \u202eevil" in out

    raw = collector.cli("tail", "--raw", "--color", "never")
    assert raw.stdout.rstrip("\n").endswith("shop[web.1]: " + HOSTILE)


def test_tail_follow_prints_a_long_line_of_controls_escaped(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """A 60 kB line of control characters (360 kB of JSON): `tail -f` prints it escaped,
    whole, and goes on streaming."""
    collector = new_collector(config=CONFIG)
    collector.start()
    send([b"shop/web.1:" + b"\x01" * 60_000], collector.port("plain"))
    wait_for(lambda: collector.get("/v1/logs")["records"], 10, "the long line stored")
    with collector.popen_cli("tail", "-f", "-n", "1", "--color", "never") as follower:
        try:
            assert follower.stdout is not None
            line = follower.stdout.readline()
            assert line.rstrip("\n").endswith(": " + r"\x01" * 60_000)
            send([b"shop/web.1:next"], collector.port("plain"))
            assert follower.stdout.readline().rstrip("\n").endswith("shop[web.1]: next")
        finally:
            follower.terminate()
