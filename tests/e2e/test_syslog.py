"""Syslog listeners end to end: a real rsyslog forwards over TCP and over TLS (octet
counting, a client certificate the listener requires) to a real collector; a real uWSGI
logs with `logger = rsyslog:` to its UDP listener; bad clients are counted by reason and
cost the other connections nothing."""

from __future__ import annotations

import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_port, free_udp_port, wait_for
from tests.support.pki import Pki, make_pki
from tests.support.rsyslog_proc import RsyslogProcess
from tests.support.uwsgi_proc import UwsgiProcess

pytestmark = [pytest.mark.e2e]

CONFIG = """
[listener:sys]
format = syslog
udp = 127.0.0.1:{port:udp}
tcp = 127.0.0.1:{port:tcp}
tls = 127.0.0.1:{port:tls}
tls-cert = {server_cert}
tls-key = {server_key}
tls-client-ca = {ca}
app = fallback
source = nohost
max-frame = 1k
max-connections = 6
frame-timeout = 2s
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    """Our CA's server and client certificates, and an unrelated CA's (the wrong ones)."""
    directory = tmp_path_factory.mktemp("pki")
    return make_pki(directory, "ours"), make_pki(directory, "other")


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory, pki: tuple[Pki, Pki]
              ) -> Iterator[CollectorProcess]:
    """One collector with UDP, TCP and TLS syslog listeners for the whole module."""
    ours = pki[0]
    config = (CONFIG.replace("{server_cert}", str(ours.server.cert))
              .replace("{server_key}", str(ours.server.key)).replace("{ca}", str(ours.ca)))
    process = CollectorProcess(tmp_path_factory.mktemp("collector"), config,
                               udp_ports={"udp": free_udp_port(), "tcp": free_port(),
                                          "tls": free_port()})
    process.start()
    try:
        yield process
    finally:
        process.close()


def records(collector: CollectorProcess, **params: str) -> list[dict[str, Any]]:
    """/v1/logs records matching `params`."""
    query = "&".join(f"{key}={quote(value)}" for key, value in params.items())
    return list(collector.get(f"/v1/logs?limit=1000&{query}")["records"])


def dropped(collector: CollectorProcess, listener: str, reason: str) -> float:
    """collector_datagrams_dropped_total for the listener and reason."""
    key = f'collector_datagrams_dropped_total{{listener="{listener}",reason="{reason}"}}'
    return collector.metrics().get(key, 0.0)


def wait_dropped(collector: CollectorProcess, listener: str, reason: str, at_least: float
                 ) -> None:
    """Until the drop counter reaches `at_least`."""
    wait_for(lambda: dropped(collector, listener, reason) >= at_least, 15,
             f"{reason} on {listener} to reach {at_least}")


RSYSLOG = """
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{inport}")
global(DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}"
       DefaultNetstreamDriverKeyFile="{key}")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{tls}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       StreamDriver="ossl" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid")
"""


def test_rsyslog_forwards_over_tcp_and_tls_with_a_client_certificate(
        collector: CollectorProcess, pki: tuple[Pki, Pki], tmp_path: Path) -> None:
    """Messages sent to a real rsyslog reach the collector twice, once by each of its
    forwarding actions (TCP, TLS with its client certificate): app from APP-NAME, source
    from HOSTNAME, emitted_at from the message's timestamp, structured data kept."""
    ours = pki[0]
    inport = free_udp_port()
    rsyslog = RsyslogProcess(tmp_path, RSYSLOG.format(
        inport=inport, ca=ours.ca, cert=ours.client.cert, key=ours.client.key,
        tcp=collector.port("tcp"), tls=collector.port("tls")), listens=(("udp", inport),))
    rsyslog.start()
    try:
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stamp = "2026-11-30T20:00:00.250Z"
        for index in range(20):
            sender.sendto(f'<14>1 {stamp} web7 rsyshop 99 - [req@1 id="{index}"] order '
                          f'{index} placed'.encode(), ("127.0.0.1", inport))
        sender.close()
        def forty() -> list[dict[str, Any]] | None:
            found = records(collector, app="rsyshop")
            return found if len(found) >= 40 else None

        got = wait_for(forty, 30, "40 records from rsyslog")
    finally:
        rsyslog.stop()
    for record in got:
        assert record["source"] == "web7"
        assert record["format"] == "syslog"
        assert record["emitted_at"] == pytest.approx(1796068800.25)
        assert record["line"].startswith('[req@1 id="')
        assert "placed" in record["line"]
    # Each message once by each action.
    assert sorted(r["line"] for r in got) == sorted(
        [f'[req@1 id="{i}"] order {i} placed' for i in range(20)] * 2)
    metrics = collector.metrics()
    for listener in ("sys/tcp", "sys/tls"):
        assert metrics[f'collector_lines_accepted_total{{listener="{listener}"}}'] >= 20
        # UDP-only figures are left out for stream listeners.
        assert not any(f'listener="{listener}"' in key for key in metrics
                       if key.startswith("collector_udp_receive_buffer"))
    assert 'collector_udp_receive_buffer_configured_bytes{listener="sys"}' in metrics


def _tls_client(cert: Path | None, key: Path | None, ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def _send_tls(collector: CollectorProcess, context: ssl.SSLContext, data: bytes) -> None:
    """Connect, handshake, send, and read until the server closes (or 5 s)."""
    with socket.create_connection(("127.0.0.1", collector.port("tls")), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(data)
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass


def test_missing_or_wrong_client_certificate_is_refused_and_counted(
        collector: CollectorProcess, pki: tuple[Pki, Pki]) -> None:
    """No client certificate, or one another CA signed: the handshake fails, is counted
    as tls_handshake_failed, and nothing is stored; the right one is heard."""
    ours, other = pki
    before = dropped(collector, "sys/tls", "tls_handshake_failed")
    _send_tls(collector, _tls_client(None, None, ours.ca), b"<13>1 - h nocert - - - x\n")
    _send_tls(collector, _tls_client(other.client.cert, other.client.key, ours.ca),
              b"<13>1 - h wrongcert - - - x\n")
    wait_dropped(collector, "sys/tls", "tls_handshake_failed", before + 2)
    _send_tls(collector, _tls_client(ours.client.cert, ours.client.key, ours.ca),
              b"<13>1 - h rightcert - - - heard\n")
    wait_for(lambda: records(collector, app="rightcert") or None, 10, "the right client")
    assert records(collector, app="nocert") == []
    assert records(collector, app="wrongcert") == []


def _octet(message: bytes) -> bytes:
    return b"%d %s" % (len(message), message)


def _connect(collector: CollectorProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", collector.port("tcp")), timeout=5)


def test_bad_clients_are_counted_and_cost_others_nothing(collector: CollectorProcess) -> None:
    """Over plain TCP, beside one good connection that stays open throughout: an
    oversize frame (skipped, connection goes on), a bad length prefix (connection
    closed), a client gone mid-frame (only that frame lost), a slow client (closed after
    frame-timeout) and one connection too many (refused). Each is counted by reason, and
    the good connection's frames before and after are all stored."""
    good = _connect(collector)
    good.sendall(b"<13>1 - h goodconn - - - before\n")
    oversize = _connect(collector)
    oversize.sendall(b"2000 " + b"x" * 2000 + _octet(b"<13>1 - h afterbig - - - ok"))
    bad = _connect(collector)
    bad.sendall(b"12a <13>1 - h badlen - - - x")
    cut = _connect(collector)
    cut.sendall(_octet(b"<13>1 - h cutconn - - - kept") + b"40 <13>1 - h cutconn - - - l")
    cut.close()
    slow = _connect(collector)
    slow.sendall(b"<13>1 - h slow - - - never ends")
    wait_dropped(collector, "sys/tcp", "oversize_frame", 1)
    wait_dropped(collector, "sys/tcp", "bad_length", 1)
    wait_dropped(collector, "sys/tcp", "truncated_frame", 1)
    wait_dropped(collector, "sys/tcp", "frame_timeout", 1)
    assert slow.recv(1) == b""  # the collector closed it
    assert records(collector, app="cutconn")[0]["line"] == "kept"
    assert len(records(collector, app="cutconn")) == 1
    assert records(collector, app="afterbig")[0]["line"] == "ok"
    assert records(collector, app="badlen") == []
    # Fill the connection bound (6; good and oversize are still open), then one more.
    extra = [_connect(collector) for _ in range(4)]
    time.sleep(0.5)
    refused = _connect(collector)
    wait_dropped(collector, "sys/tcp", "too_many_connections", 1)
    assert refused.recv(1) == b""
    good.sendall(b"<13>1 - h goodconn - - - after\n")
    wait_for(lambda: len(records(collector, app="goodconn")) == 2 or None, 10,
             "the good connection's second line")
    for sock in [good, oversize, bad, slow, refused, *extra]:
        sock.close()


def test_uwsgi_rsyslog_logger_to_the_udp_listener(collector: CollectorProcess,
                                                  tmp_path: Path) -> None:
    """A real uWSGI with `logger = rsyslog:127.0.0.1:PORT,PREFIX`: its lines land with
    the PREFIX as app, the listener's source (uWSGI sends no hostname with a PREFIX), and
    uWSGI's send time as emitted_at."""
    uwsgi = UwsgiProcess(tmp_path, [f"logger = rsyslog:127.0.0.1:{collector.port('udp')},"
                                    "uwshop"])
    started = time.time()
    uwsgi.start()
    try:
        assert uwsgi.get("/say/hello-from-uwsgi") == 200
        found = wait_for(lambda: records(collector, app="uwshop", regex="hello-from-uwsgi")
                         or None, 15, "uWSGI's line")
    finally:
        uwsgi.stop()
    record = found[0]
    assert record["source"] == "nohost"
    assert record["format"] == "syslog"
    assert record["line"] == "hello-from-uwsgi"
    # uWSGI's stamp has whole seconds, in local time.
    assert started - 1 <= record["emitted_at"] <= time.time() + 1


def test_reload_reopens_a_changed_stream_listener(collector: CollectorProcess) -> None:
    """SIGHUP with a changed setting: the TCP listener is closed (its connections with
    it) and reopened on the same port with the new default app. Runs last: it changes
    the module's collector."""
    before = _connect(collector)
    before.sendall(b"<13>1 - - - - - - before reload\n")
    wait_for(lambda: records(collector, app="fallback", regex="before reload") or None, 10,
             "the line before the reload")
    collector.config = collector.config.replace("app = fallback", "app = reloaded")
    collector.write_config()
    assert collector.process is not None
    collector.process.send_signal(signal.SIGHUP)
    collector.wait_metrics(lambda m: m.get('collector_config_reloads_total{result="ok"}', 0)
                           >= 1, 15, "the reload")
    assert before.recv(1) == b""  # closed with its listener
    before.close()
    after = _connect(collector)
    after.sendall(b"<13>1 - - - - - - after reload\n")
    wait_for(lambda: records(collector, app="reloaded", regex="after reload") or None, 10,
             "the line after the reload, under the new default app")
    after.close()
