"""The running collector over real sockets: API, auth, follow, metrics, bf-cbc, errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import wait_for
from tests.support.openssl import openssl_encrypt
from tests.support.send import crypto_lines, send

pytestmark = pytest.mark.e2e

SECRET = "bench-and-test-secret"
CONFIG = """
[listener:crypto]
udp = 127.0.0.1:{port:crypto}
format = crypto
secret = $(LOG_SECRET)
secret = algo=bf-cbc,secret=blowfish-key,app=legacy

[listener:plain]
udp = 127.0.0.1:{port:plain}
format = socket
app = plainapp
"""


@pytest.fixture
def collector(new_collector: Callable[..., CollectorProcess]) -> CollectorProcess:
    """A collector with a token, a crypto listener (aes-256 + bf-cbc) and a socket one."""
    made = new_collector(config=CONFIG, env={"LOG_SECRET": SECRET}, token="t0ken")
    made.start()
    return made


def records(collector: CollectorProcess, query: str = "", limit: int = 1000
            ) -> list[dict[str, Any]]:
    """GET /v1/logs?QUERY records."""
    found: list[dict[str, Any]] = collector.get(f"/v1/logs?limit={limit}&{query}")["records"]
    return found


def test_auth_is_required_except_for_health(collector: CollectorProcess) -> None:
    """With a token configured, every path but /healthz wants it."""
    assert collector.request("/v1/logs", token="")[0] == 401
    assert collector.request("/metrics", token="wrong")[0] == 401
    assert collector.request("/healthz", token="")[0] == 200
    assert collector.request("/v1/logs")[0] == 200
    denied = collector.cli("tail", "--token", "nope")
    assert denied.returncode == 4
    assert "401" in denied.stderr


def test_bad_query_is_a_400_with_reason(collector: CollectorProcess) -> None:
    """A bad regex or limit is answered 400 with the parameter named."""
    status, body = collector.request("/v1/logs?regex=a(")
    assert status == 400
    assert json.loads(body)["error"].startswith("regex")


def test_bf_cbc_from_openssl_is_decoded(collector: CollectorProcess) -> None:
    """uWSGI on OpenSSL 3 cannot send bf-cbc, so OpenSSL's own tool makes the datagram
    (legacy provider, key length 16 as EVP reports it); the collector decodes it."""
    plain = b"%d legacy/worker.1 blowfish says hi\n" % (time.time_ns() // 1000)
    send([openssl_encrypt(plain, b"blowfish-key", "bf-cbc", None)], collector.port("crypto"))
    found = wait_for(lambda: records(collector, "app=legacy"), 10, "the bf-cbc line")
    assert found[0]["line"] == "blowfish says hi"
    assert found[0]["source"] == "worker.1"


def test_follow_streams_backlog_then_live_and_resumes(collector: CollectorProcess) -> None:
    """tail -f prints the backlog, then new lines; a follow after an id continues there."""
    port = collector.port("crypto")
    send(crypto_lines([f"before {i}" for i in range(3)], SECRET, prefix="shop/web.1"), port)
    wait_for(lambda: len(records(collector, "app=shop")) == 3, 10, "backlog lines")
    with collector.popen_cli("tail", "-f", "-n", "2", "--app", "shop", "--color",
                             "never") as follower:
        try:
            assert follower.stdout is not None
            first = [follower.stdout.readline() for _ in range(2)]
            assert [line.rstrip().rsplit(": ", 1)[1] for line in first] == ["before 1",
                                                                            "before 2"]
            send(crypto_lines(["live one"], SECRET, prefix="shop/web.2"), port)
            assert follower.stdout.readline().rstrip().endswith("shop[web.2]: live one")
        finally:
            follower.terminate()
    everything = records(collector, "app=shop")
    after = collector.get(f"/v1/logs?after={everything[0]['id']}")["records"]
    assert [r["line"] for r in after] == ["before 1", "before 2", "live one"]


def test_tail_filters(collector: CollectorProcess) -> None:
    """--source, --grep and --since narrow tail's output; --json gives records."""
    port = collector.port("plain")
    send([b"shop/web.1:GET /a 200", b"shop/web.2:GET /b 500", b"other/web.1:x 500",
          b"no prefix here"], port)
    wait_for(lambda: len(records(collector)) == 4, 10, "four lines")
    done = collector.cli("tail", "--json", "--source", "web.1", "--grep", "GET", "--since",
                         "5m")
    lines = [json.loads(x)["line"] for x in done.stdout.splitlines()]
    assert lines == ["GET /a 200"]
    bare = records(collector, "app=plainapp")
    assert [r["line"] for r in bare] == ["no prefix here"]
    assert bare[0]["source"] == "uwsgi"


def test_metrics_count_accepted_and_dropped(collector: CollectorProcess) -> None:
    """/metrics counts datagrams and lines by listener and drops by reason, and shows the
    kernel's own drop counter for each socket."""
    port = collector.port("crypto")
    send([*crypto_lines(["ok"], SECRET), b"short", bytes(32)], port)
    metrics = collector.wait_metrics(
        lambda m: m['collector_datagrams_received_total{format="crypto",listener="crypto"}']
        == 3, 10, "three datagrams counted")
    assert metrics['collector_datagrams_accepted_total{listener="crypto"}'] == 1
    assert metrics['collector_lines_received_total{listener="crypto"}'] == 1
    assert metrics['collector_datagrams_dropped_total{listener="crypto",'
                   'reason="bad_length"}'] == 1
    assert metrics['collector_datagrams_dropped_total{listener="crypto",'
                   'reason="bad_padding"}'] == 1
    assert metrics['collector_udp_kernel_drops_total{listener="crypto"}'] == 0
    assert 'collector_store_batch_seconds_count' in metrics


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_flushes_and_exits_zero(new_collector: Callable[..., CollectorProcess],
                                       signum: int) -> None:
    """SIGTERM or SIGINT commits the last batch and exits 0; everything sent is there
    afterwards."""
    collector = new_collector(config=CONFIG, env={"LOG_SECRET": SECRET})
    collector.start()
    sent = send(crypto_lines([f"line {i}" for i in range(2000)], SECRET), collector.port(
        "crypto"))
    collector.wait_metrics(lambda m: m['collector_lines_accepted_total{listener="crypto"}']
                           == sent, 20, "all lines accepted")
    assert collector.stop(signum=signum) == 0
    collector.start()
    assert len(records(collector, limit=5000)) == sent
    assert "collector_stopped" in collector.output()


def test_bad_config_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    """`collector serve` with a bad config says where and exits 2 without starting."""
    bad = tmp_path / "bad.ini"
    bad.write_text("[collector]\nhttp = 127.0.0.1:1\n\n[listener:x]\nudp = :1\n"
                   "format = crypto\nalgo = des\nsecret = s\n")
    done = subprocess.run([sys.executable, "-m", "collector", "serve", "--config", str(bad)],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert f"{bad}:7: algo: unsupported algo 'des'" in done.stderr
