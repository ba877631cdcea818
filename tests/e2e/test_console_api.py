"""/v1/stats/volume, /v1/sources and the console's files against a real collector."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.send import send

pytestmark = pytest.mark.e2e

TOKEN = "api-token-for-console"
CONFIG = """
[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
app = shop
"""


def request_line(status: int, path: str = "/x") -> str:
    """A uWSGI request log line with this status."""
    return (f"[pid: 9|app: 0|req: 1/1] 127.0.0.1 () {{24 vars in 250 bytes}} "
            f"[Tue Nov 24 22:40:03 2026] GET {path} => generated 3 bytes in 7 msecs "
            f"(HTTP/1.1 {status}) 1 headers in 45 bytes (1 switches on core 0)")


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector for the module, with a token, fed a known mix of lines."""
    made = CollectorProcess(Path(tmp_path_factory.mktemp("console-api")), config=CONFIG,
                            token=TOKEN)
    made.start()
    yield made
    made.close()


@pytest.fixture(scope="module")
def shipped(collector: CollectorProcess) -> tuple[float, float]:
    """Lines from shop/web.1 (3 x 200, 1 x 404, 2 x 503, 2 plain), then, a second later,
    one from shop/web.2; the (start, end) of the sending."""
    start = time.time()
    lines = [*(request_line(200) for _ in range(3)), request_line(404),
             *(request_line(503, "/pay") for _ in range(2)), "plain one", "plain two"]
    send([f"shop/web.1:{line}".encode() for line in lines], collector.port("plain"))
    wait_for(lambda: len(collector.get("/v1/logs?source=web.1")["records"]) == 8, 10,
             "web.1's lines stored")
    time.sleep(1.2)
    send([b"shop/web.2:the other dyno"], collector.port("plain"))
    wait_for(lambda: collector.get("/v1/logs?source=web.2")["records"], 10,
             "web.2's line stored")
    return start, time.time()


def volume(collector: CollectorProcess, **params: str) -> dict[str, object]:
    """GET /v1/stats/volume with these parameters."""
    found: dict[str, object] = collector.get("/v1/stats/volume?" + urlencode(params))
    return found


def totals(answer: dict[str, object]) -> dict[str, int]:
    """Counts by class over all intervals."""
    series = answer["series"]
    assert isinstance(series, dict)
    return {name: sum(counts) for name, counts in series.items()}


def test_volume_stacks_counts_by_status_class(collector: CollectorProcess,
                                              shipped: tuple[float, float]) -> None:
    """Over a range holding every line, the counts per class are those shipped; the
    intervals cover the range at the step asked, and the filters narrow the counts."""
    start, end = shipped
    window = {"since": f"{start - 1:.3f}", "until": f"{end + 58:.3f}"}
    answer = volume(collector, **window, step="1m")
    assert totals(answer) == {"2xx": 3, "3xx": 0, "4xx": 1, "5xx": 2, "other": 3}
    assert answer["total"] == 9
    assert answer["step"] == 60.0
    assert answer["truncated"] is False
    times = answer["times"]
    assert isinstance(times, list)
    assert len(times) == 2
    assert times[0] == pytest.approx(start - 1)
    assert totals(volume(collector, **window, status="5xx"))["5xx"] == 2
    assert sum(totals(volume(collector, **window, status="5xx")).values()) == 2
    assert sum(totals(volume(collector, **window, status="404")).values()) == 1
    assert sum(totals(volume(collector, **window, source="web.2")).values()) == 1
    assert sum(totals(volume(collector, **window, regex="^plain")).values()) == 2
    # Outside the range: nothing.
    early = {"since": f"{start - 100:.3f}", "until": f"{start - 50:.3f}"}
    assert sum(totals(volume(collector, **early)).values()) == 0


def test_volume_refuses_bad_parameters_by_name(collector: CollectorProcess) -> None:
    """A 400 names the parameter; no token, a 401."""
    status, body = collector.request("/v1/stats/volume?step=0")
    assert status == 400
    assert json.loads(body)["error"].startswith("step: ")
    status, body = collector.request("/v1/stats/volume?limit=1")
    assert (status, json.loads(body)["error"][:26]) == (400, "unknown parameter 'limit';")
    assert collector.request("/v1/stats/volume", token="")[0] == 401
    assert collector.request("/v1/sources", token="")[0] == 401


def test_sources_lists_each_with_rate_and_silence(collector: CollectorProcess,
                                                  shipped: tuple[float, float]) -> None:
    """Each source with its count, per-minute counts adding up to it, its last line and
    time; one quiet for longer than `silent` is flagged silent."""
    status, body = collector.request("/v1/sources?silent=1s")
    assert status == 200, body
    answer = json.loads(body)
    by_source = {s["source"]: s for s in answer["sources"]}
    assert set(by_source) == {"web.1", "web.2"}
    one, two = by_source["web.1"], by_source["web.2"]
    assert (one["app"], one["lines"], one["last_line"]) == ("shop", 8, "plain two")
    assert sum(one["per_minute"]) == 8
    assert len(one["per_minute"]) == 60
    assert one["silent"] is True
    assert two["lines"] == 1
    assert two["last_line"] == "the other dyno"
    assert shipped[0] <= one["last_seen"] < two["last_seen"] <= shipped[1]
    assert collector.get("/v1/sources?app=nobody")["sources"] == []
    status, body = collector.request("/v1/sources?window=1d")
    assert status == 400
    assert json.loads(body)["error"].startswith("window: ")


@pytest.mark.parametrize(("path", "kind"), [
    ("/", "text/html"), ("/console", "text/html"), ("/console/app.js", "text/javascript"),
    ("/console/app.css", "text/css"), ("/console/favicon.svg", "image/svg+xml")])
def test_console_files_are_served_open_with_a_strict_policy(
        collector: CollectorProcess, path: str, kind: str) -> None:
    """The console's files load without the token (the page asks for it) and carry a
    Content-Security-Policy allowing no inline script or style and no other origin."""
    status, body = collector.request(path, token="")
    assert status == 200
    assert body
    status_code, headers = head(collector, path)
    assert status_code == 200
    assert headers["content-type"].startswith(kind)
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy
    assert "unsafe" not in policy
    assert headers["x-content-type-options"] == "nosniff"


def head(collector: CollectorProcess, path: str) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a GET without the token."""
    with urllib.request.urlopen(collector.url + path, timeout=10) as response:  # noqa: S310
        return response.status, {k.lower(): v for k, v in response.headers.items()}
