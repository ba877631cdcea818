"""Types of the C extension collector/_speedups.c; use it through collector.speedups."""

from collections.abc import Callable

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
