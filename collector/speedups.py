"""The one place that picks the compiled hot path (collector/_speedups.c) or pure Python.

The extension is built at install time (setup.py) where a C compiler and Python's headers
exist; where it was not built, or with `COLLECTOR_PURE_PYTHON=1` in the environment, the
pure-Python equivalents below serve instead, with identical results
(tests/unit/test_speedups.py compares the two on arbitrary input). `COMPILED` says which.

- `recvmmsg(fd, max_count, max_size)`: every datagram waiting, in one system call.
- `split_lines(payload)`: collector.decode.text's, which is the reference.
- `crypto_open(raw, block, data, low, high, app, state)`: what the crypto decoder does to a
  datagram once the cipher ran under one key (padding, timestamp, skew, NUL, replay,
  prefix, split); `_crypto_open_py` below is the reference.
- `crypto_cipher(algo, key, iv)` and `crypto_batch(...)`: decryption by libcrypto itself,
  a whole batch of datagrams in one call (key choice, size checks, cipher and all
  crypto_open does); None where the extension was built without libcrypto, or
  `crypto_cipher` gives None for an algorithm libcrypto does not offer (Blowfish without
  the legacy provider). collector.decode.crypto keeps the cipher of `cryptography` and
  crypto_open then, which is also its pure path.
- `request_line_parser(fields, reference)`: the parser collector.requestlog exposes as
  `parse_request_line` (its Python one is the reference). It is bound there rather than
  imported here because the compiled parser builds requestlog's `RequestFields`, and
  requestlog needs the parser at import time: importing each other would be a cycle.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import structlog

from collector.decode import text
from collector.decode.result import Lines

if TYPE_CHECKING:
    from collector.requestlog import RequestFields

log = structlog.get_logger("collector.speedups")

Received = list[tuple[bytes, str]]
Fields = TypeVar("Fields", bound="RequestFields")

_FORCED_PURE = os.environ.get("COLLECTOR_PURE_PYTHON", "") not in ("", "0")


def _load() -> tuple[ModuleType | None, str]:
    """The extension module and why not when it is not used."""
    if _FORCED_PURE:
        return None, "COLLECTOR_PURE_PYTHON is set"
    try:
        from collector import _speedups  # noqa: PLC0415 - optional, may be missing
    except ImportError as error:
        return None, f"the C extension is not built ({error})"
    return _speedups, ""


_compiled, WHY_PURE = _load()
COMPILED: bool = _compiled is not None


def _recvmmsg_py(fd: int, max_count: int, max_size: int) -> Received:
    """recvmmsg(2) as a loop of recvfrom on the bare fd, until nothing waits.

    A socket object is wrapped around `fd` for the call and detached afterwards, so the fd
    stays open and the caller's. MSG_DONTWAIT makes it return at once whatever the socket's
    blocking mode. What was read before an error is returned; the error shows next call.
    """
    if max_count < 1 or max_size < 1:
        raise ValueError("max_count and max_size must be at least 1")
    sock = socket.socket(fileno=fd)
    try:
        received: Received = []
        while len(received) < max_count:
            try:
                data, addr = sock.recvfrom(max_size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                if received:
                    break
                raise
            received.append((data, addr[0]))
        return received
    finally:
        sock.detach()


# The longest `<micros>` head of a logcrypto plaintext.
MAX_TIMESTAMP_DIGITS = 20
# The bytes of a datagram remembered to spot a replay: its last cipher block (or two).
REPLAY_TAG = 16

# A crypto decoder's state crypto_open works on: the replay set, the same tags oldest
# first, the replay window (0: off), the prefix cache, the lookup for a prefix not cached
# (the body in; app, source and the prefix's length out, or None) and the class of results.
CryptoState = tuple[set[bytes], deque[bytes], int, dict[bytes, tuple[str, str]],
                    Callable[[bytes], tuple[str, str, int] | None], type[Lines]]
# 0: bad padding, 1: no timestamp (both: try the next key); a str: the reason to drop.
CryptoOpened = int | str | Lines


def _crypto_open_py(raw: bytes, block: int, data: bytes, low: float, high: float,  # noqa: PLR0917 - the C function's positional call
                    app: str | None, state: CryptoState) -> CryptoOpened:
    """The crypto decoder's work on one datagram after CBC ran under one key.

    `raw` is the cipher's output for the IV block then `data`: its first `block` bytes are
    thrown away, its end is PKCS#7 padding. The checks run in the decoder's order, and the
    replay check (which records the datagram) only after the others passed.
    """
    pad = raw[-1] if raw else 0
    if not 0 < pad <= block or raw[-pad:] != bytes((pad,)) * pad:
        return 0
    plain = raw[block:-pad]
    space = plain.find(b" ", 0, MAX_TIMESTAMP_DIGITS + 1)
    if space <= 0:
        return 1
    head = plain[:space]
    if not head.isdigit():
        return 1
    emitted = int(head) / 1e6
    body = plain[space + 1:]
    if emitted < low:
        return "stale_timestamp"
    if emitted > high:
        return "future_timestamp"
    if b"\0" in body:
        return "implausible_text"
    seen, order, window, prefixes, resolve, lines_class = state
    if window:
        tag = data[-REPLAY_TAG:]
        if tag in seen:
            return "replay"
        seen.add(tag)
        order.append(tag)
        if len(order) > window:
            seen.discard(order.popleft())
    source = None
    first = body.find(b" ")
    if first > 0:
        known = prefixes.get(body[:first + 1])
        if known is not None:
            app, source = known
            body = body[first + 1:]
        else:
            named = resolve(body)
            if named is not None:
                app, source, skip = named
                body = body[skip:]
    lines, escaped = split_lines(body)
    if not lines:
        return "empty"
    return lines_class(lines, app, source, emitted, escaped)


# One datagram crypto_batch could not decode: (reason, host, the exception or None).
CryptoDrop = tuple[str, str, BaseException | None]
# crypto_batch(batch, low, high, max_datagram, keys as (cipher, app), by_peer, max_senders,
# state, catch) -> ((host, Lines) of the accepted, drops); with catch False an exception
# propagates instead of becoming the datagram's `internal_error`.
CryptoBatch = Callable[[Sequence[tuple[bytes, str]], float, float, int,
                        tuple[tuple[object, str | None], ...], dict[str, int], int,
                        CryptoState, bool],
                       tuple[list[tuple[str, Lines]], list[CryptoDrop]]]

recvmmsg: Callable[[int, int, int], Received]
split_lines: Callable[[bytes], tuple[list[str], int]]
crypto_open: Callable[[bytes, int, bytes, float, float, str | None, CryptoState],
                      CryptoOpened]
if _compiled is not None:
    recvmmsg = _compiled.recvmmsg
    split_lines = _compiled.split_lines
    crypto_open = _compiled.crypto_open
else:
    recvmmsg = _recvmmsg_py
    split_lines = text.split_lines
    crypto_open = _crypto_open_py


crypto_cipher: Callable[[str, bytes, bytes], object | None] | None = getattr(
    _compiled, "crypto_cipher", None)
crypto_batch: CryptoBatch | None = getattr(_compiled, "crypto_batch", None)


def request_line_parser(fields: type[Fields], reference: Callable[[str], Fields | None]
                        ) -> Callable[[str], Fields | None]:
    """The compiled request-line parser making `fields` tuples, or `reference` when pure.

    The compiled one hands text with characters past U+00FF to `reference`.
    """
    if _compiled is None:
        return reference
    _compiled.set_request_fields(fields, reference)
    parse: Callable[[str], Fields | None] = _compiled.parse_request_line
    return parse


def log_start_up() -> None:
    """Say once, at start-up, when the pure-Python path serves (it costs CPU per line)."""
    if not COMPILED:
        log.warning("speedups_not_compiled", reason=WHY_PURE,
                    effect="pure-Python per-line path, more CPU per line")
