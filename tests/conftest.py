"""Fixtures shared by the unit and end-to-end tiers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.uwsgi_proc import UwsgiProcess


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
