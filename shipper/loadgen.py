"""`shipper loadgen`: realistic uWSGI log lines at a fixed rate, in any wire format.

Datagrams are encoded before the clock starts (encryption included), so the sender spends
its time in `sendto` and is not the bottleneck of what it measures. Sending is paced in
one-millisecond slices: each slice sends what the rate owes by then, so a slow slice is
caught up in the next rather than lowering the rate.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from logwire.logcrypto import encrypt, frame
from logwire.native import DEFAULT_BUDGET, NativeKey
from logwire.prefix import split_socket_prefix
from shipper.batcher import Batcher
from shipper.encoder import StreamEncoder, clean_name

_METHODS = ("GET", "GET", "GET", "GET", "POST", "PUT", "DELETE")
_PATHS = ("/", "/api/v1/items", "/api/v1/items/{n}", "/login", "/static/app.{n}.js",
          "/healthz", "/search?q=term{n}", "/cart/{n}/checkout")
_STATUSES = (200, 200, 200, 200, 200, 200, 201, 204, 301, 302, 304, 400, 404, 500, 502)
_APP_LINES = ("user {n} logged in", "cache miss for key item:{n}",
              "slow query took {n} ms", "payment {n} accepted", "retrying job {n}")


def request_line(seq: int, rng: random.Random) -> bytes:
    """A uWSGI default-format request log line; `seq` is in the query string."""
    path = rng.choice(_PATHS).format(n=rng.randrange(10_000))
    sep = "&" if "?" in path else "?"
    return (f"[pid: {rng.randrange(100, 60000)}|app: 0|req: {seq % 997}/{seq}] "
            f"10.1.{rng.randrange(256)}.{rng.randrange(256)} () {{38 vars in 612 bytes}} "
            f"[{time.strftime('%a %b %d %H:%M:%S %Y')}] {rng.choice(_METHODS)} "
            f"{path}{sep}seq={seq} => generated {rng.randrange(50, 90_000)} bytes in "
            f"{rng.randrange(0, 900)} msecs (HTTP/1.1 {rng.choice(_STATUSES)}) 5 headers in "
            f"{rng.randrange(120, 400)} bytes (1 switches on core 0)\n").encode()


def app_line(seq: int, rng: random.Random) -> bytes:
    """An application's own log line (print() from a worker), tagged with `seq`."""
    return (rng.choice(_APP_LINES).format(n=rng.randrange(100_000)) + f" seq={seq}\n"
            ).encode()


def make_lines(count: int, seed: int = 1, start: int = 0) -> list[bytes]:
    """`count` lines, mostly request lines, each carrying its sequence number."""
    rng = random.Random(seed)
    return [request_line(seq, rng) if rng.random() < 0.8 else app_line(seq, rng)
            for seq in range(start, start + count)]


def encode_crypto(lines: Sequence[bytes], secret: str, algo: str = "aes-256-cbc", *,
                  iv: str | None = None, prefix: str | None = None,
                  micros: int | None = None) -> list[bytes]:
    """One logcrypto datagram per line, stamped `micros` (default: now)."""
    stamp = time.time_ns() // 1000 if micros is None else micros
    head = prefix.encode() if prefix else None
    return [encrypt(frame(line, stamp + i, head), secret, algo, iv)
            for i, line in enumerate(lines)]


def encode_socket(lines: Sequence[bytes], prefix: str | None = None) -> list[bytes]:
    """One logsocket datagram per line, with the `APP/SOURCE:` prefix when given."""
    head = (prefix + ":").encode() if prefix else b""
    return [head + line for line in lines]


def encode_native(lines: Sequence[bytes], key: NativeKey, prefix: str | None = None, *,
                  budget: int = DEFAULT_BUDGET, micros: int | None = None) -> list[bytes]:
    """Native datagrams for `lines`, batched as the sidecar batches at its default
    (as many lines as fit the budget), stamped `micros` (default: now)."""
    stamp = time.time_ns() // 1000 if micros is None else micros
    app, source, _ = split_socket_prefix((prefix or "").encode() + b":")
    batcher = Batcher(StreamEncoder(key, budget), max_lines=len(lines) + 1, max_bytes=1 << 62)
    for line in lines:
        batcher.add(clean_name(app), clean_name(source), line.rstrip(b"\n"), stamp / 1e6)
    return batcher.take(stamp / 1e6, force=True)


@dataclass
class SendReport:
    """What a paced send did."""

    sent: int
    errors: int
    seconds: float
    send_times: list[float]

    @property
    def rate(self) -> float:
        """Datagrams per second achieved."""
        return self.sent / self.seconds if self.seconds else 0.0


def send_paced(datagrams: Sequence[bytes], address: tuple[str, int], rate: float,
               *, duration: float | None = None, clock: Callable[[], float] = time.monotonic,
               record_times: bool = False) -> SendReport:
    """Send `datagrams` to `address` at `rate` per second, stopping after `duration`
    seconds (if given) or when all are sent. Returns counts and, if asked, send times
    (`time.time()` of each datagram's slice) for latency measurements."""
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET,
                         socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    total = len(datagrams)
    times: list[float] = []
    sent = errors = 0
    started = clock()
    deadline = started + duration if duration is not None else None
    sendto = sock.sendto
    try:
        while sent + errors < total:
            now = clock()
            if deadline is not None and now >= deadline:
                break
            owed = min(total, int((now - started) * rate) + 1)
            if sent + errors >= owed:
                time.sleep(max(0.0, (sent + errors + 1) / rate - (now - started)))
                continue
            wall = time.time()
            for index in range(sent + errors, owed):
                try:
                    sendto(datagrams[index], address)
                    sent += 1
                except OSError:
                    errors += 1
                if record_times:
                    times.append(wall)
    finally:
        sock.close()
    return SendReport(sent, errors, clock() - started, times)
