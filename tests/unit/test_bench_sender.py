"""bench.sender's traffic, fed to the collector's own decoder: the probes, the rare lines
and the order the benchmarks count on (one pool serves the C sender and bench.sender)."""

from __future__ import annotations

from bench.harness import SECRET
from bench.sender import RARE_LINES, bench_datagrams
from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.decode.result import Lines


def test_traffic_decodes_with_probes_and_rare_lines_where_promised() -> None:
    """Every datagram decodes under the bench's secret; every 100th is app `probe`, the
    rest app `bench`; one line in `rare_every` (never a probe) is a rare error line, in
    turn."""
    datagrams = bench_datagrams(1000, SECRET, rare_every=200, micros=1_700_000_000_000_000)
    decoder = CryptoDecoder([CryptoKey(SECRET, "aes-256-cbc")])
    decoded = [decoder.decode(d, "127.0.0.1", 1_700_000_000.0) for d in datagrams]
    assert all(isinstance(d, Lines) for d in decoded)
    lines = [d for d in decoded if isinstance(d, Lines)]
    assert [i for i, d in enumerate(lines) if d.app == "probe"] == list(range(0, 1000, 100))
    assert {d.app for d in lines} == {"probe", "bench"}
    for seq in range(101, 1000, 200):
        assert lines[seq].lines[0] == RARE_LINES[seq // 200 % len(RARE_LINES)].format(seq=seq)
