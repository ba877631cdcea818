"""collector/_speedups.c against its pure-Python references: µs per call, and RSS over a
million calls (reference counts and memory: RSS must stay flat).

    .venv/bin/python bench/speedups.py              # timeit, best of 5, per function
    .venv/bin/python bench/speedups.py --leak       # 1,000,000 calls each, RSS per 200,000
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector import speedups
from collector.decode import text
from collector.decode.crypto import CryptoDecoder, CryptoKey
from collector.requestlog import parse_request_line, parse_request_line_py
from logwire.logcrypto import encrypt, frame

LINE = ("[pid: 5644|app: 0|req: 1/1] 127.0.0.1 () {24 vars in 250 bytes} "
        "[Tue Nov 24 22:40:03 2026] GET /ghi?a=b => generated 3 bytes in 7 msecs "
        "(HTTP/1.1 200) 1 headers in 45 bytes (1 switches on core 0)")
APP_LINE = "user 96024 logged in seq=99 from the usual place, nothing to see"
BODY = (LINE + "\n").encode()
BAD_BODY = b"caf\xe9 \0 line\nsecond\r\n"
ODD_LINE = LINE.replace("3 bytes in 7 msecs", "+3 bytes in 1_000 micros")  # int() itself
WIDE_LINE = LINE.replace("/ghi", "/\u20ac")  # past U+00FF: the reference parser
HUGE_LINE = LINE.replace(" 7 msecs", " " + "9" * 400 + " msecs")  # OverflowError
BURST = 64


def overflowing(parse: Callable[[str], object]) -> Callable[[], object]:
    """A call parsing HUGE_LINE, which raises OverflowError as float(int) does."""
    def run() -> object:
        try:
            return parse(HUGE_LINE)
        except OverflowError:
            return None
    return run


def empty_receive(receive: Callable[[int, int, int], list[tuple[bytes, str]]],
                  pair: tuple[socket.socket, socket.socket]) -> Callable[[], object]:
    """A call receiving from a socket with nothing waiting (EAGAIN)."""
    return lambda: receive(pair[0].fileno(), 256, 65508)


def rss_kib() -> int:
    """Resident set size of this process, KiB (from /proc)."""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def loopback() -> tuple[socket.socket, socket.socket]:
    """A non-blocking UDP receiver and a sender connected to it on 127.0.0.1."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    return receiver, sender


def receive_burst(receive: Callable[[int, int, int], list[tuple[bytes, str]]],
                  pair: tuple[socket.socket, socket.socket]) -> Callable[[], None]:
    """A call that sends BURST datagrams and receives them all with `receive`."""
    receiver, sender = pair
    send = sender.send

    def run() -> None:
        for _ in range(BURST):
            send(BODY)
        got = 0
        while got < BURST:
            got += len(receive(receiver.fileno(), 256, 65508))
    return run


def receive_only(receive: Callable[[int, int, int], list[tuple[bytes, str]]],
                 pair: tuple[socket.socket, socket.socket], rounds: int) -> float:
    """µs per datagram spent in `receive` alone, BURST datagrams waiting per call."""
    receiver, sender = pair
    fd = receiver.fileno()
    spent = 0.0
    for _ in range(rounds):
        for _ in range(BURST):
            sender.send(BODY)
        start = time.perf_counter()
        got = 0
        while got < BURST:
            got += len(receive(fd, 256, 65508))
        spent += time.perf_counter() - start
    return spent / rounds / BURST * 1e6


class PureDecoder(CryptoDecoder):
    """The crypto decoder's pure path: `cryptography`'s cipher, the pure checks."""

    _open = staticmethod(speedups._crypto_open_py)
    _batch = None


NOW = 1_790_000_000.0


def crypto_batch(kind: type[CryptoDecoder]) -> Callable[[], object]:
    """decode_many over BURST datagrams from 4 senders: AES-256 lines with a prefix, some
    Blowfish, garbage, stale, oversize and a 3-line one. The replay window (16) is shorter
    than the batch, so the same datagrams are accepted again each call while the window,
    the prefix cache and the Lines made churn."""
    micros = int(NOW * 1e6)
    batch: list[tuple[bytes, str]] = []
    for i in range(BURST):
        peer = f"10.0.0.{i % 4}"
        if i % 16 == 5:
            data = encrypt(frame(b"bf %d\n" % i, micros + i), "beta", "bf-cbc")
        elif i % 16 == 9:
            data = bytes(range(i, i + 48))
        elif i % 16 == 11:
            data = encrypt(frame(b"old\n", micros - 10**9), "alpha", "aes-256-cbc")
        elif i % 16 == 13:
            data = b"x" * 2000
        else:
            body = BODY * (3 if i % 16 == 1 else 1)
            data = encrypt(frame(body, micros + i, b"bench/web.%d" % (i % 3)), "alpha",
                           "aes-256-cbc")
        batch.append((data, peer))
    decoder = kind([CryptoKey("alpha", "aes-256-cbc"), CryptoKey("beta", "bf-cbc")],
                   300.0, 16)
    decode_many = decoder.decode_many
    return lambda: decode_many(batch, NOW, 1500)


def cases() -> list[tuple[str, Callable[[], object], Callable[[], object], int]]:
    """(name, compiled call, pure call, items per call)."""
    assert speedups.COMPILED, speedups.WHY_PURE
    pair = loopback()
    return [
        ("parse_request_line (request line)", lambda: parse_request_line(LINE),
         lambda: parse_request_line_py(LINE), 1),
        ("parse_request_line (app line)", lambda: parse_request_line("[pid: " + APP_LINE),
         lambda: parse_request_line_py("[pid: " + APP_LINE), 1),
        ("parse_request_line (+3, 1_000)", lambda: parse_request_line(ODD_LINE),
         lambda: parse_request_line_py(ODD_LINE), 1),
        ("parse_request_line (text past U+00FF)", lambda: parse_request_line(WIDE_LINE),
         lambda: parse_request_line_py(WIDE_LINE), 1),
        ("parse_request_line (OverflowError)", overflowing(parse_request_line),
         overflowing(parse_request_line_py), 1),
        ("split_lines (one UTF-8 line)", lambda: speedups.split_lines(BODY),
         lambda: text.split_lines(BODY), 1),
        ("split_lines (not UTF-8, NUL)", lambda: speedups.split_lines(BAD_BODY),
         lambda: text.split_lines(BAD_BODY), 1),
        (f"send {BURST} + recvmmsg (per datagram)",
         receive_burst(speedups.recvmmsg, pair),
         receive_burst(speedups._recvmmsg_py, pair), BURST),
        ("recvmmsg, nothing waiting", empty_receive(speedups.recvmmsg, pair),
         empty_receive(speedups._recvmmsg_py, pair), 1),
        (f"crypto decode_many, {BURST} mixed (per datagram)", crypto_batch(CryptoDecoder),
         crypto_batch(PureDecoder), BURST),
    ]


def timings(repeat: int) -> None:
    """µs per item, best of `repeat`, compiled and pure."""
    print(f"{'function':<40} {'C µs':>8} {'pure µs':>8} {'×':>6}")
    for name, fast, pure, per in cases():
        figures = []
        for call in (fast, pure):
            timer = timeit.Timer(call)
            number, _ = timer.autorange()
            figures.append(min(timer.repeat(repeat, number)) / number / per * 1e6)
        print(f"{name:<40} {figures[0]:>8.3f} {figures[1]:>8.3f} {figures[1] / figures[0]:>6.1f}")
    pair = loopback()
    best = [min(receive_only(call, pair, 2000) for _ in range(repeat))
            for call in (speedups.recvmmsg, speedups._recvmmsg_py)]
    print(f"{f'recvmmsg alone, {BURST} waiting (per datagram)':<40} {best[0]:>8.3f} "
          f"{best[1]:>8.3f} {best[1] / best[0]:>6.1f}")


def leak(calls: int) -> None:
    """RSS every calls/5 calls of each compiled function: flat means nothing leaks."""
    for name, fast, _, per in cases():
        rounds = calls // per
        start = rss_kib()
        marks = []
        for _ in range(5):
            for _ in range(rounds // 5):
                fast()
            marks.append(rss_kib())
        print(f"{name:<40} {rounds * per:>9,} calls  RSS KiB start {start:,}  "
              + " ".join(f"{mark:,}" for mark in marks))


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leak", action="store_true", help="RSS over a million calls")
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.leak:
        leak(args.calls)
    else:
        timings(args.repeat)


if __name__ == "__main__":
    main()
