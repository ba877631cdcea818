"""JetStream spike benchmark: how fast one asyncio publisher (nats-py) gets batches of log
lines acknowledged by a stream with one replica on one server (R1, the baseline) and with
three replicas on three clustered servers (R3, what issue 9's cluster needs), and how fast
an ordered consumer reads them back.

A message is one batch of N lines of about 240 bytes (N = 1, 16, 128, 1024 by default), sent
with a `Nats-Msg-Id` header (the de-duplication the design relies on costs the server
work, so it is measured too). The publisher uses `js.publish_async` with a window of
in-flight acknowledgements (`--window` messages, fewer when that many would exceed
`--window-bytes`), for `--duration` seconds per batch size into a fresh file-backed
stream. Printed per batch size: acknowledged lines/s and messages/s, publish-to-ack
p50/p99, CPU µs per line of the publisher (this process) and of the nats-server
processes together (psutil), then the read-back rate of an ordered push consumer. Servers
are tests/support/nats.py's, on 127.0.0.1 only; the whole run takes about two minutes.

    .venv/bin/python bench/jetstream.py
    .venv/bin/python bench/jetstream.py --duration 2 --batches 16,1024
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import psutil
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, PubAck, StorageType, StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import env_note, percentile, ratio_line
from tests.support.nats import NatsCluster

LINE_BYTES = 240
HEADER = (f"{'setup':>5} {'N':>5} {'window':>6} {'secs':>5} {'msgs':>7} {'lines/s':>9} "
          f"{'msgs/s':>8} {'ack p50':>8} {'p99 ms':>7} {'pub µs/line':>11} "
          f"{'srv µs/line':>11} {'errors':>6} {'read lines/s':>12}")


def log_line(seq: int) -> bytes:
    """One uWSGI request-log-like line of LINE_BYTES bytes (newline not included)."""
    line = (f"[pid: 4242|app: 0|req: {seq}/{seq}] 10.1.2.3 () {{38 vars in 612 bytes}} "
            f"[Mon Nov 30 15:00:00 2026] GET /api/v1/items/{seq}?page=3 => generated 1834 "
            f"bytes in 7 msecs (HTTP/1.1 200) 4 headers in 134 bytes (1 switches on core 0)")
    return line.encode().ljust(LINE_BYTES - 1, b" ")[:LINE_BYTES - 1]


def batch(lines: int) -> bytes:
    """A message: `lines` log lines, each ending in a newline."""
    return b"".join(log_line(seq) + b"\n" for seq in range(lines))


@dataclass
class Trial:
    """What one batch size did in one setup."""

    setup: str
    lines_per_msg: int
    window: int
    seconds: float = 0.0
    acked: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    publisher_cpu: float = 0.0
    server_cpu: float = 0.0
    read_lines_per_s: float = float("nan")

    @property
    def lines(self) -> int:
        """Lines acknowledged."""
        return self.acked * self.lines_per_msg

    @property
    def lines_per_s(self) -> float:
        """Acknowledged lines per second."""
        return self.lines / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        """The printed row."""
        per_line = 1e6 / max(1, self.lines)
        return (f"{self.setup:>5} {self.lines_per_msg:5d} {self.window:6d} "
                f"{self.seconds:5.1f} {self.acked:7d} {self.lines_per_s:9.0f} "
                f"{self.acked / max(1e-9, self.seconds):8.0f} "
                f"{percentile(self.latencies_ms, 0.5):8.2f} "
                f"{percentile(self.latencies_ms, 0.99):7.2f} "
                f"{self.publisher_cpu * per_line:11.2f} {self.server_cpu * per_line:11.2f} "
                f"{self.errors:6d} {self.read_lines_per_s:12.0f}")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User plus system CPU seconds of `processes` so far."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def publish_for(js: JetStreamContext, trial: Trial, *, subject: str, payload: bytes,
                      seconds: float, servers: list[psutil.Process]) -> None:
    """Publish `payload` for `seconds` with at most `trial.window` acks outstanding; fill
    in the trial's counts, ack latencies and CPU."""
    window = asyncio.Semaphore(trial.window)
    me = psutil.Process()

    def on_ack(started: float) -> Callable[[asyncio.Future[PubAck]], None]:
        def done(future: asyncio.Future[PubAck]) -> None:
            window.release()
            if future.cancelled() or future.exception() is not None:
                trial.errors += 1
            else:
                trial.acked += 1
                trial.latencies_ms.append(1000 * (time.perf_counter() - started))
        return done

    cpu_me, cpu_servers = cpu_seconds([me]), cpu_seconds(servers)
    began = time.perf_counter()
    end = began + seconds
    sent = 0
    while time.perf_counter() < end:
        await window.acquire()
        started = time.perf_counter()
        future = await js.publish_async(subject, payload, headers={
            "Nats-Msg-Id": f"{trial.setup}-{trial.lines_per_msg}-{sent}"})
        future.add_done_callback(on_ack(started))
        sent += 1
    # publish_async's futures have no timeout of their own: bound the wait for the last acks.
    try:
        await asyncio.wait_for(js.publish_async_completed(), 30)
    except TimeoutError:
        trial.errors += sent - trial.acked - trial.errors
    trial.seconds = time.perf_counter() - began
    trial.publisher_cpu = cpu_seconds([me]) - cpu_me
    trial.server_cpu = cpu_seconds(servers) - cpu_servers


async def read_back(js: JetStreamContext, subject: str, messages: int, lines_per_msg: int,
                    limit: float) -> float:
    """Read the stream from the start with an ordered push consumer; lines/s (over at most
    `limit` seconds)."""
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    began = time.perf_counter()
    count = 0
    try:
        while count < messages and time.perf_counter() - began < limit:
            try:
                await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            count += 1
    finally:
        await sub.unsubscribe()
    return count * lines_per_msg / (time.perf_counter() - began)


async def run_setup(setup: str, *, size: int, replicas: int, args: argparse.Namespace,
                    workdir: Path, deadline: float) -> list[Trial]:
    """Start `size` servers, then for each batch size: a fresh stream, publish, read back,
    delete. Trials that would start after `deadline` are skipped."""
    cluster = await asyncio.to_thread(
        NatsCluster(workdir / setup, size, sync_always=args.sync_always).start)
    trials: list[Trial] = []
    nc: Client | None = None
    try:
        servers = [psutil.Process(node.process.pid) for node in cluster.nodes
                   if node.process is not None]
        nc = await nats.connect(cluster.urls, connect_timeout=5)
        js = nc.jetstream(timeout=10, publish_async_max_pending=args.window + 1)
        for lines_per_msg in args.batches:
            if time.monotonic() > deadline:
                print(f"# {setup} N={lines_per_msg}: skipped, out of time", flush=True)
                continue
            payload = batch(lines_per_msg)
            window = max(1, min(args.window, args.window_bytes // len(payload)))
            stream, subject = f"B{lines_per_msg}", f"b{lines_per_msg}.in"
            await js.add_stream(StreamConfig(
                name=stream, subjects=[subject], num_replicas=replicas,
                storage=StorageType.FILE, duplicate_window=120.0))
            trial = Trial(setup, lines_per_msg, window)
            await publish_for(js, trial, subject=subject, payload=payload,
                              seconds=args.duration, servers=servers)
            trial.read_lines_per_s = await read_back(js, subject, trial.acked, lines_per_msg,
                                                     args.read_seconds)
            await js.delete_stream(stream)
            print(trial.row(), flush=True)
            trials.append(trial)
    finally:
        if nc is not None:
            await nc.close()
        await asyncio.to_thread(cluster.stop)
    return trials


async def main_async(args: argparse.Namespace) -> int:
    """R1 on one server, then R3 on three; every trial printed, then R3 against R1."""
    print(f"# jetstream benchmark: {env_note()}; {args.duration:g} s per batch size, "
          f"window {args.window} msgs / {args.window_bytes // 2**20} MiB, "
          f"{LINE_BYTES} B lines, file storage"
          f"{' with an fsync per write' if args.sync_always else ''}, "
          f"Nats-Msg-Id on every message")
    print(HEADER)
    began = time.monotonic()
    deadline = began + args.budget
    with tempfile.TemporaryDirectory(prefix="bench-jetstream-") as tmp:
        r1 = await run_setup("R1", size=1, replicas=1, args=args, workdir=Path(tmp),
                             deadline=deadline)
        r3 = await run_setup("R3", size=3, replicas=3, args=args, workdir=Path(tmp),
                             deadline=deadline)
    print()
    baseline = {trial.lines_per_msg: trial for trial in r1}
    for trial in r3:
        base = baseline.get(trial.lines_per_msg)
        if base is None:
            continue
        print(f"N={trial.lines_per_msg:<5} R1 {base.lines_per_s:9.0f} lines/s, "
              f"R3 {trial.lines_per_s:9.0f} lines/s; "
              + ratio_line("R3", trial.lines_per_s, "R1 (baseline, same run)",
                           base.lines_per_s)
              + f"; ack p99 R1 {percentile(base.latencies_ms, 0.99):.1f} ms, "
              f"R3 {percentile(trial.latencies_ms, 0.99):.1f} ms")
    print(f"# {time.monotonic() - began:.0f} s")
    return 0


def main() -> int:
    """Parse the options and run both setups on one event loop (uvloop, as the collector)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0,
                        help="seconds of publishing per batch size and setup")
    parser.add_argument("--batches", default="1,16,128,1024",
                        type=lambda text: [int(n) for n in text.split(",")],
                        help="lines per message, comma-separated")
    parser.add_argument("--window", type=int, default=256,
                        help="acknowledgements in flight at most (messages)")
    parser.add_argument("--window-bytes", type=int, default=8 * 2**20,
                        help="bytes in flight at most (caps the window for big batches)")
    parser.add_argument("--read-seconds", type=float, default=5.0,
                        help="longest read-back per batch size")
    parser.add_argument("--sync-always", action="store_true",
                        help="servers fsync every write before acking (sync_interval: "
                             "always); by default they sync every two minutes")
    parser.add_argument("--budget", type=float, default=150.0,
                        help="seconds after which no further batch size starts")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async(args))
    return uvloop.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
