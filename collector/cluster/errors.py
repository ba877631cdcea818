"""The cluster's one error type; nats-py's exceptions are mapped to it at the boundary."""

from __future__ import annotations

from collector.errors import CollectorError


class ClusterError(CollectorError):
    """NATS cannot be reached, refused a request, or sent something this node cannot read."""
