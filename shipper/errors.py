"""The shipper's errors; only `shipper.cli` turns them into exit codes."""

from __future__ import annotations


class ShipperError(Exception):
    """The dyno-side shipper cannot start or send."""

    exit_code = 6


class UsageError(ShipperError):
    """A command-line option or environment variable is wrong."""

    exit_code = 2
