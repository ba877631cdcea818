"""The C sender (bench/csender.c) from Python: build it, write its pool, run it.

The C sender replays a pool file of datagrams (each a little-endian u16 length, then the
bytes) to 127.0.0.1 with sendmmsg, paced, bounded in count and time. Encoding (encryption
included) happens here, once, before any clock starts; the sender only sends, so one
sender feeds rsyslog and the collector alike at rates Python's `sendto` cannot reach.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from bench.harness import SendResult
from logwire.logcrypto import encrypt, frame

SOURCE = Path(__file__).resolve().parent / "csender.c"
# A datagram's length is a u16 in the pool; logcrypto and UDP stay far below it.
MAX_DATAGRAM = 0xFFFF


def default_binary() -> Path:
    """Where the compiled sender is kept: beside the venv's Python (ignored by git)."""
    return Path(sys.prefix) / "bin" / "bench-csender"


def needs_build(source: Path, binary: Path) -> bool:
    """Whether `binary` is missing or older than `source`."""
    return not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime


def build(binary: Path | None = None, source: Path = SOURCE) -> Path:
    """Compile the sender with `cc -O2` when it is missing or older than its source;
    return its path. A missing compiler or a failed build raises RuntimeError."""
    binary = binary or default_binary()
    if not needs_build(source, binary):
        return binary
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("bench/csender.c needs a C compiler (cc or gcc)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([compiler, "-O2", "-Wall", "-o", str(binary), str(source)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building {source.name} failed:\n{done.stderr}")
    return binary


def pack(datagrams: Iterable[bytes]) -> bytes:
    """Pool records for `datagrams`: each a little-endian u16 length, then the bytes."""
    parts: list[bytes] = []
    for datagram in datagrams:
        if len(datagram) > MAX_DATAGRAM:
            raise ValueError(f"a datagram of {len(datagram)} bytes does not fit the pool")
        parts += (struct.pack("<H", len(datagram)), datagram)
    return b"".join(parts)


def unpack(pool: bytes) -> list[bytes]:
    """The datagrams of a pool (the inverse of `pack`, for tests and checks)."""
    out: list[bytes] = []
    at = 0
    while at < len(pool):
        if at + 2 > len(pool):
            raise ValueError("a pool ends inside a record's length")
        (length,) = struct.unpack_from("<H", pool, at)
        if at + 2 + length > len(pool):
            raise ValueError("a pool ends inside a record")
        out.append(pool[at + 2:at + 2 + length])
        at += 2 + length
    return out


def syslog_plain(line: bytes) -> bytes:
    """A line as rsyslog's imudp is sent it: `<14>` (user.info) before it, no trailing
    newline. Without a PRI rsyslog still stores the line, but takes its first word for
    a hostname; with it the line is the message, as a syslog logger would send it."""
    return b"<14>" + line.rstrip(b"\n")


def crypto_datagrams(lines: Iterable[bytes], secret: str, *, first_micros: int,
                     probe_every: int = 0, start: int = 0) -> list[bytes]:
    """logcrypto aes-256-cbc datagrams for `lines` (numbered from `start`), as
    bench/sender.py makes them: prefix `bench/web.1`, and `probe/web.1` on every
    `probe_every`-th line (0: none) so a follower can follow just those."""
    out: list[bytes] = []
    for offset, line in enumerate(lines):
        seq = start + offset
        prefix = b"probe/web.1" if probe_every and seq % probe_every == 0 else b"bench/web.1"
        out.append(encrypt(frame(line, first_micros + seq, prefix), secret, "aes-256-cbc"))
    return out


def parse_report(text: str) -> SendResult:
    """The sender's JSON report as bench.harness's SendResult (errors are not sent)."""
    doc = json.loads(text)
    return SendResult(int(doc["sent"]), float(doc["seconds"]),
                      {int(k): float(v) for k, v in doc["probes"].items()})


def send(binary: Path, pool: Path, port: int, rate: float, count: int, *,
         max_seconds: float, probe_every: int = 0, sockets: int = 1) -> SendResult:
    """Run the sender: the pool's first `count` datagrams to 127.0.0.1:`port` at `rate`
    per second, for at most `max_seconds`, from `sockets` source sockets in turn; its
    report."""
    spread = ["--sockets", str(sockets)] if sockets != 1 else []
    done = subprocess.run(
        [str(binary), *spread, str(pool), str(port), f"{rate:.3f}", str(count),
         f"{max_seconds:.3f}", str(probe_every)],
        capture_output=True, text=True, check=False, timeout=max_seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"csender failed ({done.returncode}): {done.stderr.strip()}")
    return parse_report(done.stdout)
