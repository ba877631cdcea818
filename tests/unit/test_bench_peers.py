"""The peers benchmark's pure parts: the C sender's pool format and report, the lines each
receiver is sent, rsyslog's config and line count, and the comparison at a common rate."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from bench import csender, rsyslog
from bench.peers import Record, TrialFigures, common_rate, partition_bytes, ratio
from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.decode.result import Lines
from shipper.loadgen import make_lines

SECRET = "unit-test-secret"


def test_pack_writes_a_u16_length_before_each_datagram_and_unpack_reverses_it() -> None:
    """The pool is length-prefixed records the C sender indexes; unpack reads them back."""
    datagrams = [b"a", b"", b"x" * 300]
    pool = csender.pack(datagrams)
    assert pool[:3] == struct.pack("<H", 1) + b"a"
    assert len(pool) == 2 * 3 + 1 + 300
    assert csender.unpack(pool) == datagrams


def test_pack_refuses_a_datagram_longer_than_a_u16() -> None:
    """A datagram the length field cannot hold is an error, not a truncated record."""
    with pytest.raises(ValueError, match="does not fit"):
        csender.pack([b"x" * 0x10000])


def test_unpack_refuses_a_truncated_pool() -> None:
    """A pool cut inside a record is reported, not read short."""
    with pytest.raises(ValueError, match="inside a record"):
        csender.unpack(struct.pack("<H", 5) + b"abc")


def test_syslog_plain_adds_a_pri_and_drops_the_newline() -> None:
    """rsyslog is sent `<14>` and the line without its newline."""
    assert csender.syslog_plain(b"GET / seq=1\n") == b"<14>GET / seq=1"


def test_crypto_datagrams_decode_to_the_same_lines_with_probes_marked() -> None:
    """Every datagram decrypts (with the collector's own decoder) to its line, under app
    `probe` on every probe_every-th sequence number and `bench` otherwise."""
    lines = make_lines(25, start=100)
    now = time.time()
    datagrams = csender.crypto_datagrams(lines, SECRET, first_micros=int(now * 1e6),
                                         probe_every=10, start=100)
    decoder = CryptoDecoder([CryptoKey(SECRET, "aes-256-cbc")])
    apps = []
    for datagram, line in zip(datagrams, lines, strict=True):
        decoded = decoder.decode(datagram, "127.0.0.1", now)
        assert isinstance(decoded, Lines)
        assert decoded.lines == [line.rstrip(b"\n").decode()]
        apps.append(decoded.app)
    assert [i + 100 for i, app in enumerate(apps) if app == "probe"] == [100, 110, 120]
    assert apps.count("bench") == 22


def test_parse_report_reads_counts_seconds_and_probe_times() -> None:
    """The C sender's JSON becomes a SendResult with integer probe keys."""
    result = csender.parse_report(
        '{"sent": 10, "errors": 0, "seconds": 0.5, "probes": {"0": 1.5, "5": 2.25}}')
    assert (result.sent, result.seconds) == (10, 0.5)
    assert result.probes == {0: 1.5, 5: 2.25}


def test_needs_build_when_missing_or_older_than_the_source(tmp_path: Path) -> None:
    """Rebuilt when the binary is missing or its source changed since; not otherwise."""
    source, binary = tmp_path / "s.c", tmp_path / "s"
    source.write_text("int main(void) { return 0; }\n")
    assert csender.needs_build(source, binary)
    binary.write_bytes(b"")
    os.utime(binary, (source.stat().st_mtime + 10,) * 2)
    assert not csender.needs_build(source, binary)
    os.utime(source, (binary.stat().st_mtime + 10,) * 2)
    assert csender.needs_build(source, binary)


def test_rsyslog_config_listens_on_loopback_into_one_file(tmp_path: Path) -> None:
    """imudp on 127.0.0.1 at the port with the collector's receive buffer, omfile into the
    output, the work directory its own."""
    text = rsyslog.config_text(5514, tmp_path / "work", tmp_path / "out.log")
    assert f'global(workDirectory="{tmp_path / "work"}")' in text
    assert 'address="127.0.0.1" port="5514" rcvbufSize="32m"' in text
    assert f'action(type="omfile" file="{tmp_path / "out.log"}")' in text


def test_count_lines_counts_newlines_and_a_missing_file_as_none(tmp_path: Path) -> None:
    """Stored lines are newlines in rsyslog's file, across read blocks; none before it
    exists."""
    path = tmp_path / "out.log"
    assert rsyslog.count_lines(path) == 0
    path.write_bytes(b"x" * (1 << 20) + b"\n" + b"a\nb\n")
    assert rsyslog.count_lines(path) == 3


def figures(held: bool) -> TrialFigures:
    """Trial figures that only say held or not."""
    return TrialFigures(held, 1.0, 1.0, 1.0)


def test_common_rate_is_the_highest_rate_both_held() -> None:
    """Rates one receiver missed or never tried do not count."""
    ours = Record({2000: figures(True), 4000: figures(True), 8000: figures(False)})
    theirs = Record({2000: figures(True), 4000: figures(True), 8000: figures(True),
                     16000: figures(True)})
    assert common_rate(ours, theirs) == 4000
    assert common_rate(Record({2000: figures(False)}), theirs) is None


def test_ratio_is_nan_over_zero() -> None:
    """A figure over a zero baseline is not a number rather than an error."""
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) != ratio(1.0, 0.0)


def test_partition_bytes_sums_database_and_wal_of_every_partition(tmp_path: Path) -> None:
    """The collector's disk figure counts each partition's files, nothing else."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "logs-00000000000000000000.db").write_bytes(b"x" * 100)
    (logs / "logs-00000000000000000000.db-wal").write_bytes(b"x" * 20)
    (tmp_path / "elsewhere").write_bytes(b"x" * 1000)
    assert partition_bytes(tmp_path) == 120
