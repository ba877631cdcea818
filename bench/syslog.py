"""Syslog benchmark (issue 11): zero-loss lines/s over UDP, TCP and TLS (one and many
connections) for the collector's `format = syslog` listener and, in the same run, for
rsyslog receiving the same traffic (the reference receiver of the protocol); CPU µs per
line of each.

- rsyslog: Debian's rsyslogd with its own config, pid file and work dir in a temporary
  directory (tests/support/rsyslog_proc.py), `imudp` or `imtcp` (TLS: the `ossl` driver)
  into one `omfile`; lines are counted in its file.
- The collector: one `[listener:bench]` with `format = syslog`, storage on; lines are its
  `collector_store_lines_committed_total`.
- The traffic: RFC 5424 messages (uWSGI request lines as MSG), octet-counted over TCP and
  TLS. UDP is sent by bench/csender.c (sendmmsg, paced); TCP and TLS by one thread per
  connection here, each sending the frames due every 5 ms.

Each receiver's zero-loss rate is searched (bench/search.py: climb, then bisect), the
two searches of a transport taking turns trial by trial against a fresh receiver each.

    .venv/bin/python bench/syslog.py                       # about ten minutes
    .venv/bin/python bench/syslog.py --budget 60 --transports udp,tcp --connections 4
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import csender, rsyslog
from bench.harness import (
    Budget,
    Verdict,
    add_search_options,
    env_note,
    metric_sum,
    search_note,
    search_spec,
    trial_duration,
)
from bench.search import RateSearch
from tests.support.collector_proc import CollectorProcess
from tests.support.net import free_port, free_udp_port
from tests.support.pki import Pki, make_pki
from tests.support.rsyslog_proc import RsyslogProcess

LINE = (b"[pid: 4242|app: 0|req: 17/99] 10.0.0.1 () {34 vars in 612 bytes} "
        b"[Mon Nov 30 21:00:00 2026] GET /shop/cart?id=%d => generated 1234 bytes in 7 msecs "
        b"(HTTP/1.1 200) 4 headers in 133 bytes (1 switches on core 0)")
SLICE = 0.005


def message(index: int) -> bytes:
    """One RFC 5424 message."""
    return (b"<14>1 2026-11-30T21:00:00.000Z web1 shop 4242 - - " + LINE % index)


def frames(count: int) -> bytes:
    """`count` octet-counted frames."""
    return b"".join(b"%d %s" % (len(m), m) for m in (message(i) for i in range(count)))


@dataclass
class Target:
    """Where a trial sends: the transport, port and (TLS) the CA to trust."""

    transport: str
    port: int
    ca: Path | None = None


def _stream_sender(target: Target, payload: bytes, count: int, *, rate: float,
                   max_seconds: float, sent: list[int], index: int) -> None:
    """One connection: `count` frames of `payload` at `rate` per second, paced in slices."""
    sizes: list[int] = []
    position = 0
    while position < len(payload) and len(sizes) < count:
        space = payload.index(b" ", position)
        length = int(payload[position:space])
        position = space + 1 + length
        sizes.append(position)
    raw = socket.create_connection(("127.0.0.1", target.port), timeout=10)
    conn: socket.socket = raw
    if target.ca is not None:
        context = ssl.create_default_context(cafile=str(target.ca))
        conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
    started = time.monotonic()
    done = 0
    try:
        while done < len(sizes):
            elapsed = time.monotonic() - started
            if elapsed > max_seconds:
                break
            due = min(len(sizes), int((elapsed + SLICE) * rate))
            if due > done:
                begin = sizes[done - 1] if done else 0
                conn.sendall(payload[begin:sizes[due - 1]])
                done = due
            else:
                time.sleep(SLICE / 2)
    finally:
        sent[index] = done
        _close(conn)


def _close(conn: socket.socket) -> None:
    """Close without a reset: read what the peer sent (TLS 1.3 session tickets) first,
    since closing with unread bytes sends RST, and the receiver's kernel then discards
    what it has not read yet (lines the benchmark would count as lost)."""
    if isinstance(conn, ssl.SSLSocket):
        conn.setblocking(False)
        with contextlib.suppress(ssl.SSLError, OSError):
            while conn.recv(65536):
                pass
    conn.close()


def send_streams(target: Target, rate: float, count: int, connections: int,
                 max_seconds: float) -> tuple[int, float]:
    """Send `count` frames over `connections` connections at `rate` in all; (sent, s)."""
    per = count // connections
    payload = frames(per)
    sent = [0] * connections
    threads = [threading.Thread(target=_stream_sender, args=(target, payload, per), kwargs={
        "rate": rate / connections, "max_seconds": max_seconds, "sent": sent, "index": i})
        for i in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(sent), time.monotonic() - started


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User and system CPU of `procs` (their threads included)."""
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


RSYSLOG_INPUT = {
    "udp": 'module(load="imudp")\ninput(type="imudp" address="127.0.0.1" port="{port}" '
           'rcvbufSize="32m")\n',
    "tcp": 'module(load="imtcp" MaxSessions="1000")\n'
           'input(type="imtcp" address="127.0.0.1" port="{port}")\n',
    "tls": 'global(DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile="{cert}"'
           ' DefaultNetstreamDriverKeyFile="{key}")\n'
           'module(load="imtcp" MaxSessions="1000" StreamDriver.Name="ossl" '
           'StreamDriver.Mode="1" StreamDriver.AuthMode="anon")\n'
           'input(type="imtcp" address="127.0.0.1" port="{port}")\n',
}


@contextlib.contextmanager
def rsyslog_receiver(transport: str, pki: Pki) -> Iterator[tuple[Target, list[psutil.Process],
                                                                  Path]]:
    """A fresh rsyslogd for one trial: its target, processes and output file."""
    with tempfile.TemporaryDirectory(prefix="bench-syslog-rsyslog-") as workdir:
        port = free_udp_port() if transport == "udp" else free_port()
        output = Path(workdir) / "out.log"
        config = RSYSLOG_INPUT[transport].format(port=port, ca=pki.ca, cert=pki.server.cert,
                                                 key=pki.server.key)
        config += f'action(type="omfile" file="{output}")\n'
        server = RsyslogProcess(Path(workdir), config,
                                listens=(("udp" if transport == "udp" else "tcp", port),))
        server.start()
        try:
            assert server.process is not None
            yield (Target(transport, port, pki.ca if transport == "tls" else None),
                   [psutil.Process(server.process.pid)], output)
        finally:
            server.stop()


@contextlib.contextmanager
def collector_receiver(transport: str, pki: Pki) -> Iterator[tuple[Target, CollectorProcess]]:
    """A fresh collector with one syslog listener on `transport`, started."""
    with tempfile.TemporaryDirectory(prefix="bench-syslog-collector-") as workdir:
        port = free_udp_port() if transport == "udp" else free_port()
        tls = (f"tls-cert = {pki.server.cert}\ntls-key = {pki.server.key}\n"
               if transport == "tls" else "")
        if transport != "udp":
            tls += "max-connections = 4096\n"
        collector = CollectorProcess(
            Path(workdir), f"[listener:bench]\nformat = syslog\n{transport} = 127.0.0.1:{port}\n"
            f"{tls}", settings={"log-level": "warning"})
        collector.start()
        try:
            yield Target(transport, port, pki.ca if transport == "tls" else None), collector
        finally:
            collector.stop(timeout=30)


def _send(target: Target, rate: float, count: int, *, connections: int, seconds: float,
          binary: Path, pool: Path) -> tuple[int, float]:
    if target.transport == "udp":
        result = csender.send(binary, pool, target.port, rate, count,
                              max_seconds=seconds * 2 + 5)
        return result.sent, result.seconds
    return send_streams(target, rate, count, connections, seconds * 2 + 5)


def trial(who: str, transport: str, rate: float, *, connections: int,
          args: argparse.Namespace, pki: Pki, binary: Path, pool: Path
          ) -> tuple[Verdict, float]:
    """One run at `rate` against a fresh receiver: the verdict and CPU µs per line."""
    seconds = trial_duration(rate, args.duration, args.max_lines)
    count = max(connections, int(rate * seconds))
    count -= count % connections
    if who == "rsyslog":
        with rsyslog_receiver(transport, pki) as (target, procs, output):
            before = cpu_seconds(procs)
            sent, took = _send(target, rate, count, connections=connections, seconds=seconds,
                               binary=binary, pool=pool)
            arrived = rsyslog.settle(lambda: rsyslog.count_lines(output), sent)
            cpu = cpu_seconds(procs) - before
    else:
        with collector_receiver(transport, pki) as (target, collector):
            assert collector.process is not None
            main = psutil.Process(collector.process.pid)
            procs = [main, *main.children(recursive=True)]
            before = cpu_seconds(procs)
            sent, took = _send(target, rate, count, connections=connections, seconds=seconds,
                               binary=binary, pool=pool)

            def committed() -> int:
                return metric_sum(collector.metrics(), "collector_store_lines_committed_total")

            arrived = rsyslog.settle(committed, sent)
            cpu = cpu_seconds(procs) - before
    verdict = Verdict(rate, sent, arrived, took, args.tolerance)
    print(f"  {who:8} {transport:3} x{connections:<3} {rate:>9.0f}/s sent {sent:>8} "
          f"arrived {arrived:>8} {verdict.mark:6} cpu {1e6 * cpu / max(arrived, 1):7.1f} "
          f"µs/line", flush=True)
    return verdict, 1e6 * cpu / max(arrived, 1)


def main() -> int:
    """Search each transport's zero-loss rate for rsyslog and the collector, in turns."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_search_options(parser, budget=600.0, max_lines=400_000)
    parser.add_argument("--transports", default="udp,tcp,tls",
                        help="comma-separated: udp, tcp, tls")
    parser.add_argument("--connections", type=int, default=8,
                        help="connections for the `many` TCP and TLS runs (also run with 1)")
    args = parser.parse_args()
    print(f"syslog benchmark: {search_note(args)}; {env_note()}", flush=True)
    binary = csender.build()
    budget = Budget(args.budget)
    runs: list[tuple[str, int]] = []
    for transport in args.transports.split(","):
        runs += [(transport, 1)] if transport == "udp" else [
            (transport, 1), (transport, args.connections)]
    share = args.budget / len(runs)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-syslog-") as workdir:
        pki = make_pki(Path(workdir), "bench")
        pool = Path(workdir) / "pool.bin"
        pool.write_bytes(csender.pack(message(i) for i in range(args.max_lines)))
        for transport, connections in runs:
            searches = {who: RateSearch(search_spec(args)) for who in ("collector", "rsyslog")}
            cpu: dict[str, dict[float, float]] = {"collector": {}, "rsyslog": {}}
            ends = budget.elapsed + share
            while not budget.out_of_time() and budget.elapsed < ends:
                moved = False
                for who, search in searches.items():
                    rate = search.next_rate()
                    if rate is None:
                        continue
                    verdict, per_line = trial(who, transport, rate, connections=connections,
                                              args=args, pki=pki, binary=binary, pool=pool)
                    search.record(rate, verdict.held)
                    if verdict.held:
                        cpu[who][rate] = per_line
                    moved = True
                if not moved:
                    break
            results.append((transport, connections, searches, cpu))
    print("\nsummary (zero-loss lines/s; CPU µs per line at that rate)")
    for transport, connections, searches, cpu in results:
        figures = {}
        for who, search in searches.items():
            good = search.good or 0.0
            figures[who] = (good, cpu[who].get(good, float("nan")))
        (c_rate, c_cpu), (r_rate, r_cpu) = figures["collector"], figures["rsyslog"]
        ratio = c_rate / r_rate if r_rate else float("nan")
        cpu_ratio = c_cpu / r_cpu if r_cpu else float("nan")
        print(f"  {transport:3} x{connections:<3} collector {c_rate:>9.0f}/s "
              f"{c_cpu:6.1f} µs/line | rsyslog {r_rate:>9.0f}/s {r_cpu:6.1f} µs/line | "
              f"rate ratio {ratio:.2f}, cpu ratio {cpu_ratio:.2f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
