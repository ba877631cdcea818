"""What the benchmarks need beyond tests/support: a collector set up for load, samplers,
senders, a bare receiver, the time budget and the verdict of one trial.

Collectors, webhook receivers and SMTP servers are tests/support's (one harness for tests
and benchmarks); this module only adds what a benchmark does with them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from bench.search import SearchSpec
from collector.store.blocks import read_rows
from collector.store.partitions import list_partitions
from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_udp_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-aes-256-cbc-key"
CRYPTO_LISTENER = f"format = crypto\nsecret = {SECRET}"
# A sender falling this far short of the rate asked did not test that rate.
SENDER_SHORTFALL = 0.95
SETTLE_SECONDS = 1.0


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait_quietly(check: Callable[[], object], timeout: float) -> None:
    """Poll `check` until it holds or `timeout` passes; a timeout is not an error here,
    since what was reached by then is the figure."""
    with contextlib.suppress(AssertionError):
        wait_for(check, timeout, "a benchmark condition")


@contextlib.contextmanager
def bench_collector(listener: str = CRYPTO_LISTENER, extra: str = ""
                    ) -> Iterator[CollectorProcess]:
    """A fresh `collector serve` (tests/support's) in a temporary directory with one UDP
    listener named `bench` (`listener`: its lines after `udp =`, crypto by default) and
    `extra` ini text, logging warnings only; not started. Stopped and removed on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        collector = CollectorProcess(
            Path(workdir),
            config=f"[listener:bench]\nudp = 127.0.0.1:{{port:bench}}\n{listener}\n{extra}\n",
            settings={"log-level": "warning"})
        collector.port("bench")
        try:
            yield collector
        finally:
            try:
                if collector.process is not None:
                    collector.stop(timeout=30)
            except subprocess.TimeoutExpired:
                collector.close()
            # Give the machine a moment between trials (the writer's last fsync, sockets).
            time.sleep(SETTLE_SECONDS)


def udp_port(collector: CollectorProcess) -> int:
    """The benchmark listener's port."""
    return collector.port("bench")


def processes(collector: CollectorProcess) -> list[psutil.Process]:
    """The collector and its children (the store writer)."""
    assert collector.process is not None
    main = psutil.Process(collector.process.pid)
    return [main, *main.children(recursive=True)]


def metric_sum(metrics: dict[str, float], prefix: str) -> int:
    """The sum of every series whose name (with labels) starts with `prefix`."""
    return int(sum(v for k, v in metrics.items() if k.startswith(prefix)))


def settle(collector: CollectorProcess, expected: int, timeout: float = 30.0
           ) -> dict[str, float]:
    """Wait until the collector has read `expected` datagrams (or stopped reading) and its
    store queue is empty; return the metrics then."""
    last: dict[str, float] = {}
    stable_since = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metrics = collector.metrics()
        idle = metrics.get("collector_store_queue_depth", 1) == 0
        read = (metric_sum(metrics, "collector_datagrams_received_total")
                + metric_sum(metrics, "collector_udp_kernel_drops_total"))
        if metrics != last:
            stable_since = time.monotonic()
        if idle and (read >= expected or time.monotonic() - stable_since > 1.0):
            return metrics
        last = metrics
        time.sleep(0.1)
    return last


@dataclass(frozen=True)
class Verdict:
    """Whether one trial held its rate: every line sent arrived (within the tolerance)
    and the sender really sent at the rate asked."""

    asked: float
    sent: int
    arrived: int
    seconds: float
    tolerance: float

    @property
    def achieved(self) -> float:
        """Lines per second the sender achieved."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def loss(self) -> float:
        """The share of lines sent that did not arrive."""
        return max(0, self.sent - self.arrived) / self.sent if self.sent else 1.0

    @property
    def sender_short(self) -> bool:
        """The sender could not keep the rate: the rate was not tested."""
        return self.achieved < SENDER_SHORTFALL * self.asked

    @property
    def held(self) -> bool:
        """Held: loss within the tolerance at the rate asked."""
        return self.sent > 0 and not self.sender_short and self.loss <= self.tolerance

    @property
    def mark(self) -> str:
        """A word for the trial's row."""
        return "held" if self.held else "SENDER" if self.sender_short else "loss"


class Budget:
    """A benchmark's time: trials stop being started once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = time.monotonic()

    def out_of_time(self) -> bool:
        """Whether the budget is spent."""
        return time.monotonic() - self.started >= self.seconds

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started


def retrying(trial: Callable[[float], bool], retries: int) -> Callable[[float], bool]:
    """A trial that, when it misses, is run again up to `retries` times: on a shared
    machine another process's burst can cost a run; a rate held once is held."""
    def oracle(rate: float) -> bool:
        return any(trial(rate) for _ in range(1 + retries))
    return oracle


def trial_duration(rate: float, duration: float, max_lines: int) -> float:
    """`duration`, shortened at high rates so that a trial sends at most `max_lines`
    (the sender encodes everything first and keeps it in memory)."""
    return min(duration, max_lines / rate)


def add_search_options(parser: argparse.ArgumentParser, budget: float, max_lines: int
                       ) -> None:
    """The options every benchmark's search takes, with its own default budget."""
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per trial")
    parser.add_argument("--budget", type=float, default=budget,
                        help="seconds for the searches; no trial starts after it")
    parser.add_argument("--start", type=float, default=2_000.0, help="first rate tried")
    parser.add_argument("--resolution", type=float, default=0.05,
                        help="relative width at which bisecting stops")
    parser.add_argument("--max-trials", type=int, default=24, help="rates tried per search")
    parser.add_argument("--tolerance", type=float, default=0.0,
                        help="share of lines a held trial may lose (default: none)")
    parser.add_argument("--retries", type=int, default=1,
                        help="runs again of a trial that missed before it counts as missed")
    parser.add_argument("--max-lines", type=int, default=max_lines,
                        help="lines per trial at most (shorter trials at high rates)")


def search_spec(args: argparse.Namespace) -> SearchSpec:
    """The search the options ask for."""
    return SearchSpec(start=args.start, resolution=args.resolution,
                      max_trials=args.max_trials)


def search_note(args: argparse.Namespace) -> str:
    """How the figures are found, for a benchmark's first line."""
    return (f"{args.duration:g} s per trial (at most {args.max_lines} lines); held = "
            f"lines lost <= {args.tolerance:g} of those sent and the sender kept the rate "
            f"(>= {100 * SENDER_SHORTFALL:.0f} %); a miss is retried {args.retries}x; search "
            f"from {args.start:.0f}/s, doubling, then bisecting to "
            f"{100 * args.resolution:g} %, at most {args.max_trials} rates; budget "
            f"{args.budget:.0f} s")


def sender_note(bad: float | None, short: set[float]) -> str:
    """A caveat when the first rate not held was one the sender could not keep: the figure
    is then this machine's sending limit, not the receiver's."""
    if bad is not None and bad in short:
        return " (the sender could not keep the first rate not held: a sending limit)"
    return ""


def ratio_line(name: str, figure: float, baseline_name: str, baseline: float) -> str:
    """The summary's last line: the figure over the baseline measured in the same run."""
    ratio = figure / baseline if baseline else float("nan")
    return f"ratio {name}/{baseline_name}: {ratio:.2f}"


class Sampler(threading.Thread):
    """Samples CPU seconds and RSS of some processes every 100 ms."""

    def __init__(self, processes: Callable[[], list[psutil.Process]]) -> None:
        super().__init__(daemon=True)
        self._processes = processes
        self._halt = threading.Event()
        self.peak_rss = 0
        self.cpu_start = self._cpu()
        self.cpu_end = self.cpu_start
        self.started = time.monotonic()
        self.ended = self.started

    def _cpu(self) -> float:
        total = 0.0
        for process in self._processes():
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def run(self) -> None:
        """Sample until stopped."""
        while not self._halt.wait(0.1):
            rss = 0
            for process in self._processes():
                with contextlib.suppress(psutil.NoSuchProcess):
                    rss += process.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)

    def stop(self) -> None:
        """Stop and take the final CPU reading."""
        self.cpu_end = self._cpu()
        self.ended = time.monotonic()
        self._halt.set()
        self.join(5)

    @property
    def cpu_percent(self) -> float:
        """CPU used over the window, as percent of one core."""
        return 100 * (self.cpu_end - self.cpu_start) / max(1e-9, self.ended - self.started)


class StorePoller(threading.Thread):
    """Watches the partition files for probe lines; notes when each became visible."""

    def __init__(self, data_dir: Path, app: str = "probe", interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self._dir = data_dir / "logs"
        self._app = app
        self._interval = interval
        self._halt = threading.Event()
        self.seen: dict[int, float] = {}

    def run(self) -> None:
        """Poll `SELECT ... WHERE app = probe AND id > last` (the app index makes it cheap)."""
        last = 0
        connections: dict[Path, sqlite3.Connection] = {}
        while not self._halt.wait(self._interval):
            for partition in list_partitions(self._dir):
                conn = connections.get(partition.path)
                if conn is None:
                    conn = connections[partition.path] = sqlite3.connect(partition.path)
                try:
                    rows = read_rows(conn, app=self._app, after=last)
                except sqlite3.OperationalError:
                    continue
                now = time.time()
                for row in rows:
                    record_id, line = row[0], row[7]
                    last = max(last, record_id)
                    self.seen.setdefault(_seq(line), now)
        for conn in connections.values():
            conn.close()

    def stop(self) -> None:
        """Stop polling."""
        self._halt.set()
        self.join(5)


class Follower(threading.Thread):
    """Follows /v1/logs?follow=1&app=probe; notes when each probe line arrived."""

    def __init__(self, http_port: int, app: str = "probe") -> None:
        super().__init__(daemon=True)
        self._url = f"http://127.0.0.1:{http_port}/v1/logs"
        self._app = app
        self.seen: dict[int, float] = {}
        self.connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        """Run the streaming client on its own loop."""
        self._task = self._loop.create_task(self._follow())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    async def _follow(self) -> None:
        params = {"follow": "1", "app": self._app, "limit": "0"}
        async with aiohttp.ClientSession() as session, session.get(
                self._url, params=params, timeout=aiohttp.ClientTimeout(total=None)
        ) as response:
            async for raw in response.content:
                now = time.time()
                if raw.strip():
                    doc = json.loads(raw)
                    if "cursor" in doc:
                        self.connected.set()
                    else:
                        self.seen.setdefault(_seq(doc["line"]), now)

    def stop(self) -> None:
        """Cancel the stream."""
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self.join(5)


def _seq(line: str) -> int:
    return int(line.rsplit("seq=", 1)[1].split(maxsplit=1)[0].rstrip("&"))


@dataclass
class SendResult:
    """What a bench.sender process reported."""

    sent: int
    seconds: float
    probes: dict[int, float]


class Sender:
    """A bench.sender process: it starts encoding at once (while the collector starts);
    `go()` waits until it is ready, then lets it send. `close()` ends it if `go()` never
    ran (a trial that failed to start)."""

    def __init__(self, port: int, rate: float, duration: float, secret: str = SECRET,
                 extra: Sequence[str] = ()) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sender", f"--port={port}", f"--rate={rate}",
             f"--duration={duration}", f"--secret={secret}", *extra],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._ready = False

    def wait_ready(self) -> None:
        """Wait until everything is encoded (once; `go()` calls it too)."""
        if self._ready:
            return
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("sender failed to start")
        self._ready = True

    def go(self) -> SendResult:
        """Wait until encoded, send now; block until done."""
        self.wait_ready()
        out, _ = self._process.communicate("go\n", timeout=600)
        doc = json.loads(out)
        return SendResult(doc["sent"], doc["seconds"],
                          {int(k): v for k, v in doc["probes"].items()})

    def close(self) -> None:
        """Kill the process if it is still running."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.communicate(timeout=30)


def latencies(sent: dict[int, float], seen: dict[int, float]) -> list[float]:
    """Milliseconds from send to seen, for probes seen."""
    return [(seen[seq] - at) * 1000 for seq, at in sent.items() if seq in seen]


class BareReceiver:
    """bench.bare_receiver: counts datagrams and nothing else."""

    def __init__(self) -> None:
        self.port = free_udp_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_receiver", f"--port={self.port}"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("bare receiver failed to start")

    def stop(self) -> int:
        """SIGTERM; the count it printed."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        return int(out.strip().splitlines()[-1])


def env_note() -> str:
    """One line about the machine, printed with every benchmark."""
    return (f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, load "
            f"{os.getloadavg()[0]:.2f}")
