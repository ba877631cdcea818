"""One error type per domain.

Third-party exceptions are mapped to these at the module that talks to the third party;
only the CLI turns them into exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass


class CollectorError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class Location:
    """Where in a config file a value came from."""

    file: str
    line: int
    key: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.key}" if self.key else where


class ConfigError(CollectorError):
    """A config file, option or command-line value is wrong; names file, line and key."""

    exit_code = 2

    def __init__(self, message: str, location: Location | None = None) -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)


class StoreError(CollectorError):
    """The store cannot open, read or write its data."""

    exit_code = 3


class ApiError(CollectorError):
    """A client call to the collector's HTTP API failed."""

    exit_code = 4
