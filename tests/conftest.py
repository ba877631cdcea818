"""Fixtures shared by the unit and end-to-end tiers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.cluster.connection import Connection
from collector.config.model import ClusterConfig
from tests.support.collector_proc import CollectorProcess
from tests.support.nats import NatsCluster
from tests.support.smtp import SmtpServer
from tests.support.uwsgi_proc import UwsgiProcess
from tests.support.webhook import WebhookServer

# What a failed test shows of each collector it ran: the end of its log (CI keeps only
# the tail of the run's output, and a flaky end-to-end test is fixed from what it says).
LOG_TAIL_LINES = 30
LOG_LINE_CHARS = 300


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    """A failed end-to-end test's report gets a section per collector it started: the
    last lines that collector logged."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    made = getattr(item, "funcargs", {}).get("collectors")
    if report.when != "call" or not report.failed or not made:
        return
    for index, collector in enumerate(made):
        lines = collector.output().splitlines()[-LOG_TAIL_LINES:]
        report.sections.append((f"collector{index} log (last {len(lines)} lines)",
                                "\n".join(line[:LOG_LINE_CHARS] for line in lines)))


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[list[CollectorProcess]]:
    """Collector processes made by a test; all killed at teardown."""
    made: list[CollectorProcess] = []
    yield made
    for collector in made:
        collector.close()


@pytest.fixture
def new_collector(tmp_path: Path, collectors: list[CollectorProcess]
                  ) -> Callable[..., CollectorProcess]:
    """A factory: `new_collector(config=..., env=...)` makes (not starts) a collector."""

    def make(**kwargs: object) -> CollectorProcess:
        workdir = tmp_path / f"collector{len(collectors)}"
        workdir.mkdir()
        collector = CollectorProcess(workdir, **kwargs)  # type: ignore[arg-type]
        collectors.append(collector)
        return collector

    return make


@pytest.fixture
def uwsgi_apps(tmp_path: Path) -> Iterator[list[UwsgiProcess]]:
    """uWSGI processes made by a test; all stopped at teardown."""
    made: list[UwsgiProcess] = []
    yield made
    for app in made:
        app.stop()


@pytest.fixture
def new_uwsgi(tmp_path: Path, uwsgi_apps: list[UwsgiProcess]
              ) -> Callable[..., UwsgiProcess]:
    """A factory: `new_uwsgi(lines=[...])` makes (not starts) a uWSGI app."""

    def make(**kwargs: object) -> UwsgiProcess:
        workdir = tmp_path / f"uwsgi{len(uwsgi_apps)}"
        workdir.mkdir()
        app = UwsgiProcess(workdir, **kwargs)  # type: ignore[arg-type]
        uwsgi_apps.append(app)
        return app

    return make


@pytest.fixture
def new_webhook() -> Iterator[Callable[..., WebhookServer]]:
    """A factory: `new_webhook(start=True, status=200, delay=0.0, port=None)` makes an
    HTTP receiver on 127.0.0.1 (started unless `start=False`); all stopped at teardown."""
    made: list[WebhookServer] = []

    def make(*, start: bool = True, **kwargs: Any) -> WebhookServer:
        server = WebhookServer(**kwargs)
        made.append(server)
        return server.start() if start else server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running aiosmtpd server on 127.0.0.1 that keeps every message it takes."""
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def new_nats(tmp_path: Path) -> Iterator[Callable[..., NatsCluster]]:
    """A factory: `new_nats(size=3)` starts `size` JetStream servers on loopback (1, or 3
    clustered) and waits for the meta leader; every server is stopped at teardown."""
    made: list[NatsCluster] = []

    def make(size: int = 3, timeout: float = 30.0) -> NatsCluster:
        cluster = NatsCluster(tmp_path / f"nats{len(made)}", size)
        made.append(cluster)
        return cluster.start(timeout)

    yield make
    for cluster in made:
        cluster.stop()


@pytest.fixture
async def connection(new_nats: Callable[..., NatsCluster]) -> AsyncIterator[Connection]:
    """A cluster node's connection (collector.cluster.connection) to one real JetStream
    server, replicas 1."""
    cluster = await asyncio.to_thread(new_nats, 1)
    connection = Connection(ClusterConfig(nats=tuple(cluster.urls), node="t", replicas=1))
    await connection.open()
    yield connection
    await connection.close()
