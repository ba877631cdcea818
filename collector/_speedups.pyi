"""Types of the C extension collector/_speedups.c; use it through collector.speedups."""

from collections.abc import Callable, Sequence

def recvmmsg(fd: int, max_count: int, max_size: int, /) -> list[tuple[bytes, str]]:
    """Every waiting datagram, up to max_count, each cut to max_size bytes."""

def parse_request_line(line: str, /) -> tuple[object, ...] | None:
    """Fields of a uWSGI request line (the class given to set_request_fields), or None."""

def set_request_fields(fields: type[tuple[object, ...]],
                       reference: Callable[[str], object], /) -> None:
    """The class parse_request_line builds and the parser it hands wide text to."""

def split_lines(payload: bytes, /) -> tuple[list[str], int]:
    """Non-empty lines of a payload, and how many needed escaping."""

def crypto_open(raw: bytes, block: int, data: bytes, low: float, high: float,
                app: str | None, state: tuple[object, ...], /) -> object:
    """The crypto decoder's checks after CBC ran under one key: 0 (bad padding), 1 (no
    timestamp), a drop reason, or the datagram's Lines (collector.speedups has the
    reference)."""

def crypto_cipher(algo: str, key: bytes, iv: bytes, /) -> object | None:
    """A long-lived CBC decryption context for crypto_batch, or None where libcrypto does
    not offer the algorithm. Absent where the extension was built without libcrypto."""

def crypto_batch(batch: Sequence[tuple[bytes, str]], low: float, high: float,
                 max_datagram: int, keys: tuple[tuple[object, str | None], ...],
                 by_peer: dict[str, int], max_senders: int, state: tuple[object, ...],
                 catch: bool, /) -> tuple[list[tuple[str, object]],
                                          list[tuple[str, str, BaseException | None]]]:
    """CryptoDecoder.decode_many in one call: the accepted datagrams' (host, Lines) and
    the others' (reason, host, exception or None)."""
