"""The shipper's pure parts: batching (budget, delay, drop-oldest), the uwsgi.ini lines
for each mode, and the native listener's key lines in the collector's config."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config.load import load_config
from collector.decode.native import NativeDecoder
from collector.decode.result import Lines
from collector.errors import ConfigError
from logwire.native import make_key
from shipper.batcher import Batcher
from shipper.encoder import StreamEncoder, clean_name
from shipper.errors import UsageError
from shipper.loadgen import encode_native, make_lines
from shipper.uwsgi_config import ShipOptions, uwsgi_lines

NOW = 1_800_000_000.0
KEY = make_key("aes256gcm", bytes(range(32)))


def test_nothing_leaves_before_it_is_due() -> None:
    """A line waits up to the delay for company; then it goes alone."""
    batcher = Batcher(StreamEncoder(KEY, 1472), delay=0.02)
    batcher.add(b"a", b"b", b"one line", NOW)
    assert batcher.take(NOW + 0.019) == []
    assert batcher.deadline() == pytest.approx(NOW + 0.02)
    assert len(batcher.take(NOW + 0.02)) == 1
    assert batcher.deadline() is None
    assert len(batcher) == 0


def test_a_full_datagram_leaves_at_once() -> None:
    """Lines that fill the budget are sealed without waiting; the rest waits."""
    batcher = Batcher(StreamEncoder(KEY, 1472))
    for _ in range(7):
        batcher.add(b"shop", b"web.1", b"x" * 250, NOW)
    out = batcher.take(NOW)
    assert len(out) == 1
    # Five 253-byte records and 75 bytes of framing; a sixth line would not fit.
    assert len(out[0]) == 5 * 253 + 75
    assert len(batcher) == 2


def test_drop_oldest_counts() -> None:
    """Over `max_lines`, the oldest lines go and are counted."""
    encoder = StreamEncoder(KEY, 1472)
    batcher = Batcher(encoder, max_lines=5, max_bytes=1 << 20)
    for i in range(12):
        batcher.add(b"a", b"b", f"l{i}".encode(), NOW)
    assert batcher.dropped == 7
    assert len(batcher) == 5
    small = Batcher(StreamEncoder(KEY, 1472), max_lines=100, max_bytes=100)
    for _ in range(5):
        small.add(b"a", b"b", b"y" * 40, NOW)
    assert (len(small), small.dropped) == (2, 3)


def test_origins_are_not_mixed() -> None:
    """Lines for different app/source pairs go in different datagrams."""
    batcher = Batcher(StreamEncoder(KEY, 1472))
    batcher.add(b"a", b"web.1", b"1", NOW)
    batcher.add(b"a", b"web.2", b"2", NOW)
    batcher.add(b"a", b"web.1", b"3", NOW)
    decoder = NativeDecoder([KEY])
    results = [decoder.decode(d, "h", NOW) for d in batcher.take(NOW, force=True)]
    assert [(r.source, r.lines) for r in results if isinstance(r, Lines)] == [
        ("web.1", ["1"]), ("web.2", ["2"]), ("web.1", ["3"])]


@given(st.lists(st.binary(min_size=1, max_size=6000).filter(lambda b: b"\n" not in b),
                min_size=1, max_size=30),
       st.integers(300, 1472))
@settings(max_examples=60, deadline=None)
def test_fuzz_budget_is_never_exceeded_and_lines_survive(lines: list[bytes], budget: int
                                                          ) -> None:
    """Whatever the lines and budget, no datagram is over the budget, and decoding them
    in order gives back every line (long ones joined)."""
    batcher = Batcher(StreamEncoder(KEY, budget), max_lines=1000, max_bytes=1 << 30)
    for line in lines:
        batcher.add(b"app", b"src", line, NOW)
    datagrams = batcher.take(NOW, force=True)
    assert all(len(d) <= budget for d in datagrams)
    decoder = NativeDecoder([KEY])
    got: list[str] = []
    for datagram in datagrams:
        result = decoder.decode(datagram, "h", NOW)
        assert isinstance(result, Lines)
        assert result.lost == 0
        got += result.lines
    expected = [line.replace(b"\0", b"\\x00").decode("utf-8", "backslashreplace")
                for line in lines]
    assert got == expected


def test_loadgen_native_batches_like_the_sidecar() -> None:
    """Pre-encoded native load: several lines per datagram, none lost, all decodable."""
    lines = make_lines(200)
    datagrams = encode_native(lines, KEY, "bench/web.1", micros=int(NOW * 1e6))
    assert len(datagrams) < len(lines) / 3
    decoder = NativeDecoder([KEY])
    count = 0
    for datagram in datagrams:
        result = decoder.decode(datagram, "h", NOW)
        assert isinstance(result, Lines)
        assert (result.app, result.source) == ("bench", "web.1")
        count += len(result.lines)
    assert count == 200


def test_uwsgi_lines_crypto() -> None:
    """The logcrypto line names the secret's variable, never a secret."""
    lines = uwsgi_lines(ShipOptions(collector="logs.example.com:1717", app="shop",
                                    mode="crypto"))
    assert "log-master = true" in lines
    assert ("logger = crypto:addr=logs.example.com:1717,algo=aes-256-cbc,"
            "secret=$(LOG_SECRET),prefix=shop/$(DYNO)") in lines


def test_uwsgi_lines_socket_and_native() -> None:
    """The socket line uses the APP/SOURCE: prefix; native adds the sidecar and its wait."""
    socket_lines = uwsgi_lines(ShipOptions(collector="10.0.0.5:1718", app="blog",
                                           mode="socket", source="web.3"))
    assert "logger = socket:10.0.0.5:1718,blog/web.3:" in socket_lines
    native = uwsgi_lines(ShipOptions(collector="$(LOG_COLLECTOR)", app="shop", mode="native"))
    assert "logger = socket:127.0.0.1:1719,shop/$(DYNO):" in native
    assert ("attach-daemon = shipper run --listen 127.0.0.1:1719 --collector "
            "'$(LOG_COLLECTOR)'") in native
    assert "hook-master-start = exec:shipper ready --listen 127.0.0.1:1719" in native
    # The key stays in the sidecar's environment: not in the file, not on its command line.
    assert not any("--key" in line or "$(LOG_KEY)" in line for line in native)


@pytest.mark.parametrize("options", [
    ShipOptions(collector="nohost", app="shop", mode="crypto"),
    ShipOptions(collector="h:1", app="bad name", mode="crypto"),
    ShipOptions(collector="h:1", app="shop", mode="crypto", source="web,1"),
    ShipOptions(collector="h:1", app="shop", mode="crypto", algo="bf-cbc"),
    ShipOptions(collector="h:1", app="shop", mode="native", listen="10.0.0.1:1719"),
    ShipOptions(collector="h:1", app="shop", mode="syslog"),
])
def test_uwsgi_lines_refuse_what_uwsgi_would_misread(options: ShipOptions) -> None:
    """Commas, spaces, unknown modes and a non-loopback sidecar port are refused."""
    with pytest.raises(UsageError):
        uwsgi_lines(options)


def write(tmp_path: Path, body: str) -> Path:
    """A config file with one native listener section body."""
    path = tmp_path / "c.ini"
    path.write_text(f"[listener:n]\nudp = 127.0.0.1:1\nformat = native\n{body}")
    return path


def test_native_listener_keys(tmp_path: Path) -> None:
    """Several keys load; a damaged token or a repeated key id is an error with its line."""
    other = make_key("chacha20poly1305", bytes(32))
    config = load_config(write(tmp_path, f"key = {KEY.token}\nkey = {other.token}\n"), env={})
    assert config.listeners[0].keys == (KEY.token, other.token)
    with pytest.raises(ConfigError, match=r"c.ini:4: key: key token is damaged"):
        load_config(write(tmp_path, f"key = {KEY.token[:-3]}abc\n"), env={})
    with pytest.raises(ConfigError, match="already given"):
        load_config(write(tmp_path, f"key = {KEY.token}\nkey = {KEY.token}\n"), env={})
    with pytest.raises(ConfigError, match="shipper keygen"):
        load_config(write(tmp_path, ""), env={})


def test_smallest_budget_with_longest_names_still_carries_lines() -> None:
    """At the 256-byte minimum budget, names are cut so that lines, long ones in parts,
    still fit."""
    encoder = StreamEncoder(KEY, 256)
    name = clean_name(b"n" * 300)
    assert len(name) == 64
    batcher = Batcher(encoder)
    batcher.add(name, name, b"z" * 1000, NOW)
    datagrams = batcher.take(NOW, force=True)
    assert all(len(d) <= 256 for d in datagrams)
    decoder = NativeDecoder([KEY])
    got = [line for d in datagrams
           for line in getattr(decoder.decode(d, "h", NOW), "lines", [])]
    assert got == ["z" * 1000]
