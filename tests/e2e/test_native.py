"""The native format end to end: a real collector with a `format = native` listener, the
real sidecar process, and hand-made attacks over loopback UDP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from logwire.native import HEADER_SIZE, generate_key
from shipper.batcher import Batcher
from shipper.encoder import StreamEncoder
from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_udp_port, wait_for
from tests.support.send import send
from tests.support.shipper_proc import SidecarProcess, gone, shipper, shipper_env

pytestmark = pytest.mark.e2e

KEY = generate_key()
OLD_KEY = generate_key("chacha20poly1305")
CONFIG = """
[listener:native]
udp = 127.0.0.1:{port:native}
format = native
key = $(LOG_KEY)
; the key being rotated out
key = $(OLD_KEY)
app = fallback
"""


@pytest.fixture
def collector(new_collector: Callable[..., CollectorProcess]) -> CollectorProcess:
    """A collector with one native listener holding two keys."""
    made = new_collector(config=CONFIG, env={"LOG_KEY": KEY.token, "OLD_KEY": OLD_KEY.token})
    made.start()
    return made


@pytest.fixture
def sidecars(tmp_path: Path) -> Any:
    """Sidecar processes made by a test; killed at teardown."""
    made: list[SidecarProcess] = []
    yield made
    for sidecar in made:
        sidecar.close()


def records(collector: CollectorProcess, *args: str) -> list[dict[str, Any]]:
    """`collector tail --json -n 10000 ARGS`."""
    done = collector.cli("tail", "--json", "-n", "10000", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line]


def metric(metrics: dict[str, float], name: str, **labels: str) -> float:
    """The value of one labelled series (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return metrics.get(f"{name}{{{wanted}}}", 0.0)


def datagrams(encoder: StreamEncoder, lines: list[str], now: float | None = None
              ) -> list[bytes]:
    """What a sidecar would send for `lines` at once."""
    at = time.time() if now is None else now
    batcher = Batcher(encoder)
    for line in lines:
        batcher.add(b"shop", b"web.1", line.encode(), at)
    return batcher.take(at, force=True)


def test_sidecar_batches_and_flushes_queued_lines_on_sigterm(
        collector: CollectorProcess, sidecars: list[SidecarProcess], tmp_path: Path) -> None:
    """Lines held by the sidecar (a long delay keeps them queued) all reach the collector
    when it gets SIGTERM, several to a datagram, and it exits 0."""
    sidecar = SidecarProcess(tmp_path, collector.port("native"), KEY.token,
                             ["--delay-ms", "60000"])
    sidecars.append(sidecar)
    sidecar.start()
    messages = [f"shop/web.1:line {i}\n".encode() for i in range(40)]
    messages.append(b"shop/web.1:first of two\nsecond of two\n")
    sidecar.send(messages)
    time.sleep(0.5)
    assert metric(collector.metrics(), "collector_lines_accepted_total",
                  listener="native") == 0
    assert sidecar.stop() == 0
    metrics = collector.wait_metrics(
        lambda m: metric(m, "collector_lines_accepted_total", listener="native") >= 42, 10,
        "the flushed lines")
    assert metric(metrics, "collector_datagrams_accepted_total", listener="native") <= 3
    lines = [r["line"] for r in records(collector, "--app", "shop", "--source", "web.1")]
    assert lines == [f"line {i}" for i in range(40)] + ["first of two", "second of two"]
    assert "shipper_stopped" in sidecar.output()


def test_drop_oldest_reaches_the_collector_as_a_marker(
        collector: CollectorProcess, sidecars: list[SidecarProcess], tmp_path: Path) -> None:
    """A sidecar that cannot send as fast as lines come (rate-capped) drops the oldest
    lines; the count arrives as a marker and in the lost-lines metric, and every line is
    either stored or counted."""
    sidecar = SidecarProcess(tmp_path, collector.port("native"), KEY.token,
                             ["--max-rate", "4", "--max-queue", "20", "--delay-ms", "1"])
    sidecars.append(sidecar)
    sidecar.start()
    total = 400
    sidecar.send([f"shop/web.1:flood {i} {'x' * 100}\n".encode() for i in range(total)])
    time.sleep(1.0)
    assert sidecar.stop() == 0

    def settled(metrics: dict[str, float]) -> bool:
        """Every line is stored or counted dropped."""
        lost = metric(metrics, "collector_lines_lost_total", listener="native", app="shop",
                      source="web.1")
        stored = metric(metrics, "collector_lines_accepted_total", listener="native")
        return lost > 0 and lost + stored >= total

    metrics = collector.wait_metrics(settled, 10, "every line stored or counted dropped")
    lost = metric(metrics, "collector_lines_lost_total", listener="native", app="shop",
                  source="web.1")
    found = records(collector, "--app", "shop")
    logs = [r for r in found if r["kind"] == "log"]
    markers = [r["line"] for r in found if r["kind"] == "marker"]
    assert len(logs) + lost == total
    assert markers
    assert all(m.endswith("lines dropped by the shipper on web.1 --") for m in markers)
    assert sum(int(m.split()[1]) for m in markers) == lost
    # Drop-oldest: the newest lines survived.
    assert logs[-1]["line"].startswith(f"flood {total - 1} ")


def test_attacks_are_counted_by_reason_and_the_stream_around_them_is_intact(
        collector: CollectorProcess) -> None:
    """Unknown key, replay, stale, truncated and flipped-bit datagrams between genuine
    ones: each counted under its reason, every genuine line stored, nothing lost. A stream
    under the second (rotated) key is accepted too."""
    encoder = StreamEncoder(KEY, 1472)
    good = [d for i in range(6) for d in datagrams(encoder, [f"good {i}"])]
    stranger = datagrams(StreamEncoder(generate_key(), 1472), ["intruder"])[0]
    stale = datagrams(StreamEncoder(KEY, 1472), ["stale"], now=time.time() - 3600)[0]
    flipped = bytearray(good[3])
    flipped[HEADER_SIZE + 5] ^= 0x01
    attacks = {"unknown_key": stranger, "replay": good[0], "stale_timestamp": stale,
               "truncated": good[3][:-7], "bad_tag": bytes(flipped)}
    sequence: list[bytes] = []
    for index, datagram in enumerate(good):
        sequence.append(datagram)
        if index < len(attacks):
            sequence.append(list(attacks.values())[index])
    sequence += datagrams(StreamEncoder(OLD_KEY, 1472), ["rotated key"])
    send(sequence, collector.port("native"))
    metrics = collector.wait_metrics(
        lambda m: metric(m, "collector_lines_accepted_total", listener="native") >= 7, 10,
        "the genuine lines")
    for reason in attacks:
        assert metric(metrics, "collector_datagrams_dropped_total", listener="native",
                      reason=reason) == 1, reason
    assert not any(k.startswith("collector_lines_lost_total") and v for k, v in metrics.items())
    lines = [r["line"] for r in records(collector, "--app", "shop")]
    assert lines == [f"good {i}" for i in range(6)] + ["rotated key"]


def test_a_lost_datagram_shows_in_tail_and_metrics(collector: CollectorProcess) -> None:
    """A datagram of three lines that never arrives becomes `-- 3 lines lost from web.1 --`
    in `collector tail`, before the line that revealed it, and in
    collector_lines_lost_total{app,source}."""
    encoder = StreamEncoder(KEY, 1472)
    first = datagrams(encoder, ["before"])
    datagrams(encoder, ["gone 1", "gone 2", "gone 3"])
    middle = datagrams(encoder, ["after"])
    last = datagrams(encoder, ["later"])
    port = collector.port("native")
    send(first + middle, port)
    # The gap becomes final once `after` has waited a second for the missing datagram.
    time.sleep(1.5)
    send(last, port)
    metrics = collector.wait_metrics(
        lambda m: metric(m, "collector_lines_lost_total", listener="native", app="shop",
                         source="web.1") == 3, 10, "the loss to be counted")
    assert metric(metrics, "collector_lines_accepted_total", listener="native") == 3
    text = collector.cli("tail", "-n", "10", "--color", "never").stdout.splitlines()
    assert [line.split(": ", 1)[1] for line in text] == [
        "before", "after", "-- 3 lines lost from web.1 --", "later"]
    kinds = [r["kind"] for r in records(collector)]
    assert kinds == ["log", "log", "marker", "log"]


def test_sidecar_exits_when_its_parent_is_killed(collector: CollectorProcess) -> None:
    """Killed hard, a parent leaves no sidecar behind: it notices the new parent and
    exits (uWSGI's attach-daemon parent, SIGKILLed, is the case this covers)."""
    port = free_udp_port()
    parent = subprocess.Popen(
        ["sh", "-c", f"{sys.executable} -m shipper run --listen 127.0.0.1:{port} "
         f"--collector 127.0.0.1:{collector.port('native')} & echo $!; wait"],
        env=shipper_env(LOG_KEY=KEY.token), stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = psutil.Process(int(parent.stdout.readline()))
        assert shipper("ready", "--listen", f"127.0.0.1:{port}").stderr == ""
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_for(lambda: gone(child), 10, "the orphaned sidecar to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_restarted_collector_does_not_report_the_sidecars_drops_again(
        collector: CollectorProcess) -> None:
    """The sidecar's dropped total is cumulative: after the collector restarts, the next
    datagram still says 40, and no second marker for those 40 lines is stored or counted;
    only drops after the restart are."""
    encoder = StreamEncoder(KEY, 1472)
    port = collector.port("native")
    encoder.dropped_total = 40
    send(datagrams(encoder, ["before restart"]), port)
    collector.wait_metrics(
        lambda m: metric(m, "collector_lines_accepted_total", listener="native") >= 1, 10,
        "the line before the restart")
    assert collector.stop() == 0
    collector.start()
    send(datagrams(encoder, ["after restart"]), port)
    encoder.dropped_total = 43
    send(datagrams(encoder, ["after more drops"]), port)
    metrics = collector.wait_metrics(
        lambda m: metric(m, "collector_lines_accepted_total", listener="native") >= 2, 10,
        "the lines after the restart")
    assert metric(metrics, "collector_lines_lost_total", listener="native", app="shop",
                  source="web.1") == 3
    found = records(collector, "--app", "shop")
    assert [(r["kind"], r["line"]) for r in found] == [
        ("marker", "-- 40 lines dropped by the shipper on web.1 --"),
        ("log", "before restart"),
        ("log", "after restart"),
        ("marker", "-- 3 lines dropped by the shipper on web.1 --"),
        ("log", "after more drops"),
    ]


def test_a_flood_of_streams_and_sources_stays_within_the_bounds(
        new_collector: Callable[..., CollectorProcess]) -> None:
    """Thousands of distinct streams, each from its own source and each leaving gaps:
    /metrics shows the streams and pending datagrams held at their configured bounds, the
    evictions by reason, the lost-line series capped, and the collector's memory levels
    off from one wave of the flood to the next."""
    collector = new_collector(config=CONFIG + "max-streams = 100\nmax-pending = 300\n"
                              "max-stream-pending = 4\n",
                              env={"LOG_KEY": KEY.token, "OLD_KEY": OLD_KEY.token})
    collector.start()
    port = collector.port("native")
    process = psutil.Process(collector.process.pid if collector.process else 0)
    sent = 0
    rss: list[int] = []
    for wave in range(3):
        batch: list[bytes] = []
        for n in range(1500):
            encoder = StreamEncoder(KEY, 1472)
            source = f"web.{wave}.{n}".encode()
            made = [encoder.seal_lines(b"shop", source, [f"l{i}".encode()],
                                       time.time_ns() // 1000) for i in range(13)]
            batch += [made[0], *made[2::2]]
        sent += send(batch, port)

        def read(metrics: dict[str, float], total: int = sent) -> bool:
            """Every datagram sent so far was read."""
            return metric(metrics, "collector_datagrams_received_total", listener="native",
                          format="native") >= total

        collector.wait_metrics(read, 60, f"wave {wave} to be read")
        rss.append(process.memory_info().rss)
    metrics = collector.metrics()
    assert metric(metrics, "collector_udp_kernel_drops_total", listener="native") == 0
    assert metric(metrics, "collector_native_streams", listener="native") == 100
    assert 0 < metric(metrics, "collector_native_pending_datagrams", listener="native") <= 300
    evicted = {reason: metric(metrics, "collector_listener_evictions_total",
                              listener="native", reason=reason)
               for reason in ("stream", "stream_pending", "lost_series")}
    assert evicted["stream"] == 4500 - 100
    assert evicted["stream_pending"] == 4500 * 2
    assert evicted["lost_series"] > 0
    series = [k for k in metrics if k.startswith("collector_lines_lost_total{")]
    assert len(series) <= 1025
    assert metric(metrics, "collector_lines_lost_total", listener="native", app="_other",
                  source="_other") > 0
    # Generous: the bounds hold the decoder's state; what remains is allocator noise.
    assert rss[2] - rss[1] < 16 << 20, rss
