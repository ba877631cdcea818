"""The TCP/TLS syslog listener in-process (the store is a list): many TLS clients at once
over loopback, and a connection fed bytes directly."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from pathlib import Path
from typing import Any

from collector.config.model import ListenerConfig
from collector.ingest import Ids, Ingest
from collector.listen.syslog_stream import (
    SyslogConnection,
    SyslogStreamListener,
    start_syslog_stream,
)
from tests.support.net import free_port
from tests.support.pki import make_pki


class _ListStore:
    """A store that keeps every record in a list."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def append(self, records: Any) -> bool:
        """Take every record."""
        self.records.extend(records)
        return True


async def test_many_tls_clients_at_once_are_all_served(tmp_path: Path) -> None:
    """Forty TLS clients connect at once and each sends a line: every handshake
    completes (none of their first bytes is left in the stream reader) and every line
    is stored, app and source from the message."""
    pki = make_pki(tmp_path)
    config = ListenerConfig(name="s/tls", host="127.0.0.1", port=free_port(),
                            format="syslog", app="d", source="d", transport="tls",
                            tls_cert=pki.server.cert, tls_key=pki.server.key,
                            frame_timeout=10.0)
    store = _ListStore()
    listener = await start_syslog_stream(config, Ingest(Ids(), store))  # type: ignore[arg-type]
    client = ssl.create_default_context(cafile=str(pki.ca))

    def one(index: int) -> None:
        # Blocking clients in threads, so that connects and ClientHellos arrive while the
        # event loop is busy with other connections, as real senders do.
        with socket.create_connection(("127.0.0.1", config.port), timeout=20) as raw, \
                client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"<13>1 - host%d app - - - line %d\n" % (index, index))
            # close_notify, read to the end: unread bytes at close would make a reset.
            with contextlib.suppress(OSError):
                tls.unwrap()

    try:
        async with asyncio.timeout(30):
            sending = asyncio.gather(*(asyncio.to_thread(one, i) for i in range(40)))
            while len(store.records) < 40:  # noqa: ASYNC110 (the store is a plain list)
                await asyncio.sleep(0.02)
            listener.close()
            await sending
    finally:
        listener.close()
    assert sorted(r.line for r in store.records) == sorted(f"line {i}" for i in range(40))
    assert {r.app for r in store.records} == {"app"}
    assert listener.stats.dropped.get("tls_handshake_failed", 0) == 0


class _Transport:
    """The parts of a transport a connection uses: its peer, and abort."""

    def __init__(self) -> None:
        self.aborted = False

    def get_extra_info(self, name: str) -> Any:
        """The peer's address."""
        return ("127.0.0.1", 40000) if name == "peername" else None

    def abort(self) -> None:
        """Note the abort."""
        self.aborted = True


async def test_a_reset_loses_only_the_unfinished_frame() -> None:
    """Bytes fed in two reads, then a reset: every complete frame was stored as it was
    read, the cut one is counted `truncated_frame`, the reset `connection_error`."""
    config = ListenerConfig(name="s/tcp", host="127.0.0.1", port=0, format="syslog",
                            app="d", source="d", transport="tcp")
    store = _ListStore()
    listener = SyslogStreamListener(config, Ingest(Ids(), store))  # type: ignore[arg-type]
    listener._server = object()  # type: ignore[assignment]  # as if accepting
    connection = SyslogConnection(listener)
    transport = _Transport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    connection.data_received(b"<13>1 - h app - - - one\n<13>1 - h app - - - tw")
    connection.data_received(b"o\n<13>1 - h app - - - cut sho")
    connection.connection_lost(ConnectionResetError())
    assert [r.line for r in store.records] == ["one", "two"]
    assert listener.stats.dropped == {"truncated_frame": 1, "connection_error": 1}
    assert transport.aborted
    assert listener.held() == {"connections": 0}
