"""The APP/SOURCE naming convention both ends use in front of a line.

The shipper writes it (a uWSGI `logger = socket:` prefix `APP/SOURCE:`, a logcrypto
`prefix=APP/SOURCE`); the collector reads it to name the app and the dyno.
"""

from __future__ import annotations

import re

# The app a name, the source a dyno or process name (`web.1`, `worker.3`, `run.8812`,
# `host-a@web.1`).
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_SOURCE = r"[A-Za-z0-9_.@\-]+"
CRYPTO_PREFIX = re.compile(rf"({_NAME})/({_SOURCE}) ")
SOCKET_PREFIX = re.compile(rf"({_NAME})/({_SOURCE}):[ ]?")
_SOCKET_PREFIX_BYTES = re.compile(SOCKET_PREFIX.pattern.encode())


def split_socket_prefix(data: bytes) -> tuple[bytes | None, bytes | None, bytes]:
    """App, source and the rest of a logsocket datagram (`APP/SOURCE:` convention); the
    names are None where the datagram has no such prefix."""
    match = _SOCKET_PREFIX_BYTES.match(data)
    if match is None:
        return None, None, data
    return match.group(1), match.group(2), data[match.end():]
