"""Shared benchmark machinery: a collector process, senders, samplers, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import uvloop
from aiohttp import web

from collector.store.partitions import list_partitions

ROOT = Path(__file__).resolve().parent.parent


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free loopback port."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); nan if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    """Poll until `check()`; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@dataclass
class Collector:
    """`collector serve` in a temporary directory, with one listener: crypto unless
    `listener` gives the lines of another (after `udp =`)."""

    secret: str = "benchmark-secret-aes-256-cbc-key"
    extra: str = ""
    listener: str = ""
    udp_port: int = field(default_factory=lambda: free_port(socket.SOCK_DGRAM))
    http_port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        """The collector's data directory."""
        return self.workdir / "data"

    def start(self) -> None:
        """Write the config, start, wait for /healthz."""
        config = self.workdir / "collector.ini"
        listener = self.listener or f"format = crypto\nsecret = {self.secret}"
        config.write_text(
            f"[collector]\ndata-dir = {self.data_dir}\nhttp = 127.0.0.1:{self.http_port}\n"
            f"log-level = warning\n\n[listener:bench]\nudp = 127.0.0.1:{self.udp_port}\n"
            f"{listener}\n{self.extra}\n")
        with (self.workdir / "collector.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "collector", "serve", "--config", str(config)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        if not wait_until(self._healthy, 30):
            raise RuntimeError("collector did not start: "
                               + (self.workdir / "collector.log").read_text()[-2000:])

    def _healthy(self) -> bool:
        try:
            return bool(self.get("/healthz")["status"] == "ok")
        except OSError:
            return False

    def get(self, path: str) -> Any:
        """GET JSON from the API."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def metrics(self) -> dict[str, float]:
        """/metrics as a flat dict."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def processes(self) -> list[psutil.Process]:
        """The collector and its children (the store writer)."""
        assert self.process is not None
        main = psutil.Process(self.process.pid)
        return [main, *main.children(recursive=True)]

    def settle(self, expected: int, timeout: float = 30.0) -> dict[str, float]:
        """Wait until the collector has read `expected` datagrams (or stopped reading)
        and its store queue is empty; return the metrics then."""
        last: dict[str, float] = {}
        stable_since = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = self.metrics()
            done = (metrics.get("collector_store_queue_depth", 1) == 0
                    and metrics != {} and _received(metrics) + _kernel_drops(metrics)
                    >= expected)
            if metrics != last:
                stable_since = time.monotonic()
            if done or (metrics.get("collector_store_queue_depth", 1) == 0
                        and time.monotonic() - stable_since > 1.0):
                return metrics
            last = metrics
            time.sleep(0.1)
        return last

    def stop(self) -> None:
        """SIGTERM, wait, remove the directory."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)


def _received(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items()
               if k.startswith("collector_datagrams_received_total"))


def _kernel_drops(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items()
               if k.startswith("collector_udp_kernel_drops_total"))


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
                    rows = conn.execute("SELECT id, line FROM logs WHERE app = ? AND id > ?",
                                        (self._app, last)).fetchall()
                except sqlite3.OperationalError:
                    continue
                now = time.time()
                for record_id, line in rows:
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
    """A bench.sender process, encoded and waiting for `go()`."""

    def __init__(self, port: int, rate: float, duration: float, secret: str,
                 extra: Sequence[str] = ()) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sender", f"--port={port}", f"--rate={rate}",
             f"--duration={duration}", f"--secret={secret}", *extra],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("sender failed to start")

    def go(self) -> SendResult:
        """Send now; block until done."""
        out, _ = self._process.communicate("go\n", timeout=600)
        doc = json.loads(out)
        return SendResult(doc["sent"], doc["seconds"],
                          {int(k): v for k, v in doc["probes"].items()})


def latencies(sent: dict[int, float], seen: dict[int, float]) -> list[float]:
    """Milliseconds from send to seen, for probes seen."""
    return [(seen[seq] - at) * 1000 for seq, at in sent.items() if seq in seen]


class WebhookReceiver(threading.Thread):
    """A local aiohttp server (uvloop, its own thread) that notes when each POST arrived.

    `arrivals` holds (path, time.time() once the body was read, body); parsing is left to
    the caller, after the run, so that the receiver adds as little as it can.
    """

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.port = free_port()
        self.arrivals: list[tuple[str, float, bytes]] = []
        self._loop = uvloop.new_event_loop()
        self._ready = threading.Event()
        self._halt: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving; returns once it listens."""
        super().start()
        if not self._ready.wait(10):
            raise RuntimeError("webhook receiver did not start")

    def run(self) -> None:
        """Serve until stopped."""
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._halt = asyncio.Event()
        self._ready.set()
        await self._halt.wait()
        await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrivals.append((request.path, time.time(), body))
        return web.Response(text="ok")

    def stop(self) -> None:
        """Stop serving."""
        if self._halt is not None:
            self._loop.call_soon_threadsafe(self._halt.set)
        self.join(10)


class BareReceiver:
    """bench.bare_receiver: counts datagrams and nothing else."""

    def __init__(self) -> None:
        self.port = free_port(socket.SOCK_DGRAM)
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
