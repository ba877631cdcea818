"""uWSGI request log lines parsed into fields; workers learned from spawn lines."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collector.requestlog import WorkerMap, parse_request_line, parse_spawn_line

LINE = ("[pid: 5644|app: 0|req: 1/1] 127.0.0.1 () {24 vars in 250 bytes} "
        "[Tue Nov 24 22:40:03 2026] GET /ghi?a=b => generated 3 bytes in 7 msecs "
        "(HTTP/1.1 200) 1 headers in 45 bytes (1 switches on core 0)")


def test_default_format() -> None:
    """The line uWSGI 2.0 logs for a request, as captured from a real one."""
    fields = parse_request_line(LINE)
    assert fields is not None
    assert (fields.method, fields.path, fields.status, fields.msecs, fields.size,
            fields.pid) == ("GET", "/ghi?a=b", 200, 7.0, 3, 5644)


def test_memory_report_micros_and_sendfile() -> None:
    """memory-report's prefix, log-micros and `via sendfile` all parse."""
    line = ("{address space usage: 123 bytes/0MB} {rss usage: 45 bytes/0MB} "
            "[pid: 9|app: 0|req: 2/3] 10.0.0.1 (bob) {30 vars in 300 bytes} "
            "[Tue Nov 24 22:40:03 2026] POST /up => generated 1000 bytes in 2500 micros "
            "via sendfile (HTTP/1.0 502) 3 headers in 90 bytes (2 switches on core 1)")
    fields = parse_request_line(line)
    assert fields is not None
    assert (fields.method, fields.status, fields.msecs, fields.pid) == ("POST", 502, 2.5, 9)


def test_other_lines_are_not_requests() -> None:
    """Lines that only look a bit like requests parse to None."""
    assert parse_request_line("spawned uWSGI worker 1 (pid: 5, cores: 1)") is None
    assert parse_request_line("[pid: 12] something else") is None


def test_worker_map() -> None:
    """Spawn and respawn lines teach pid -> worker, per app and source."""
    workers = WorkerMap()
    assert parse_spawn_line("spawned uWSGI worker 2 (pid: 77, cores: 1)") == (2, 77)
    workers.learn("a", "web.1", "spawned uWSGI worker 2 (pid: 77, cores: 1)")
    workers.learn("a", "web.1", "Respawned uWSGI worker 1 (new pid: 78)")
    assert workers.worker("a", "web.1", 77) == 2
    assert workers.worker("a", "web.1", 78) == 1
    assert workers.worker("a", "web.2", 77) is None


@given(st.text(max_size=300))
def test_fuzz_never_raises(text: str) -> None:
    """Arbitrary text parses to fields or None."""
    parse_request_line("[pid: " + text)
    parse_spawn_line("uWSGI worker " + text)
