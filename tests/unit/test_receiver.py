"""A receiver process's per-datagram work, byte-fed: datagrams in, BATCH/STATE frames out."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any

from bench.receivers import Figures, project
from collector.config.model import CryptoSecret, ListenerConfig
from collector.errors import Location
from collector.listen import receiver
from collector.listen.receiver import Receiver, encode_config, read_config
from collector.store.frames import FrameReader, encode
from logwire.logcrypto import encrypt, frame
from logwire.native import generate_key

SECRET = "unit-secret"


def config(**changes: Any) -> ListenerConfig:
    """A crypto listener config with two receivers."""
    fields: dict[str, Any] = {
        "name": "app", "host": "127.0.0.1", "port": 1, "format": "crypto", "app": "shop",
        "source": "uwsgi", "receivers": 2,
        "secrets": (CryptoSecret(SECRET, "aes-256-cbc", None, None, Location("f", 1)),)}
    fields.update(changes)
    return ListenerConfig(**fields)


def datagram(line: str, micros: int, prefix: bytes | None = None) -> bytes:
    """One logcrypto datagram carrying `line`."""
    return encrypt(frame(line.encode() + b"\n", micros, prefix), SECRET, "aes-256-cbc")


def frames_of(data: bytes) -> list[tuple[bytes, Any]]:
    """The frames in `data`."""
    return FrameReader().feed(data)


def test_a_batch_carries_decoded_lines_and_counts_every_drop_by_reason() -> None:
    """Good datagrams become items (host, lines, app, source, ...); an oversize one, a
    replay and garbage are counted under their reasons; the datagram count covers all."""
    now = time.time()
    micros = int(now * 1e6)
    good = datagram("GET / 200", micros, b"web/dyno.1")
    work = Receiver(config(max_datagram=200))
    [(kind, (count, dropped, items))] = frames_of(work.batch(
        [(good, "10.0.0.1"), (good, "10.0.0.1"), (b"x" * 201, "10.0.0.2"),
         (b"garbage!" * 4, "10.0.0.3"), (datagram("two\nlines", micros + 1), "10.0.0.1")],
        now))
    assert kind == receiver.BATCH
    assert count == 5
    assert dropped["oversize"] == 1
    assert sum(dropped.values()) == 3
    assert [item[0] for item in items] == ["10.0.0.1", "10.0.0.1"]
    assert items[0][1:4] == (["GET / 200"], "web", "dyno.1")
    assert items[1][1] == ["two", "lines"]


def test_a_sender_over_its_rate_is_counted_rate_limited() -> None:
    """sender-rate is applied per sender in the receiver, as in the main process."""
    now = time.time()
    work = Receiver(config(sender_rate=2.0))
    sent = [(datagram(f"line {i}", int(now * 1e6) + i), "10.0.0.9") for i in range(5)]
    [(_, (count, dropped, items))] = frames_of(work.batch(sent, now))
    assert count == 5
    assert len(items) == 2
    assert dropped == {"rate_limited": 3}


def test_state_reports_the_decoders_bounded_state() -> None:
    """A native listener's receiver reports its streams held and evictions in STATE."""
    work = Receiver(config(format="native", secrets=(), keys=(generate_key().token,)))
    [(kind, (evicted, held))] = frames_of(work.state())
    assert kind == receiver.STATE
    assert evicted == {}
    assert held.get("streams") == 0


def test_the_config_message_round_trips_through_a_pipe() -> None:
    """What the collector writes first to a receiver's stdin is read back whole."""
    read, write = os.pipe()
    try:
        os.write(write, encode_config(config()))
        assert read_config(read) == config()
    finally:
        os.close(read)
        os.close(write)


def test_run_hands_on_what_the_socket_receives_and_stops_at_eof() -> None:
    """`run` reads the socket into BATCH frames while its control pipe is open and, once
    that pipe ends, writes a last STATE and returns."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    control_read, control_write = os.pipe()
    out_read, out_write = os.pipe()
    runner = threading.Thread(target=Receiver(config()).run,
                              args=(sock, control_read, out_write))
    runner.start()
    now = time.time()
    reader = FrameReader()
    got: list[tuple[bytes, Any]] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(3):
                sender.sendto(datagram(f"line {i}", int(now * 1e6) + i), sock.getsockname())
        deadline = time.monotonic() + 10
        while sum(len(p[2]) for k, p in got if k == receiver.BATCH) < 3:
            assert time.monotonic() < deadline, got
            if select.select([out_read], [], [], 0.1)[0]:
                got += reader.feed(os.read(out_read, 65536))
        os.close(control_write)
        runner.join(10)
        assert not runner.is_alive()
        os.close(out_write)
        while chunk := os.read(out_read, 65536):
            got += reader.feed(chunk)
    finally:
        sock.close()
        os.close(control_read)
        os.close(out_read)
    lines = [item[1] for kind, payload in got if kind == receiver.BATCH
             for item in payload[2]]
    assert sorted(lines) == [["line 0"], ["line 1"], ["line 2"]]
    assert got[-1][0] == receiver.STATE


def test_projection_names_the_process_that_limits() -> None:
    """Receiving work divides over the receivers; main's and the writer's do not: with
    main at 10 µs per line, 16 cores hold 100,000 lines/s, limited by main."""
    rate, limit = project(Figures(True, 10.0, (4.0, 4.0), 5.0), 16)
    assert (round(rate), limit) == (100_000, "main")
    rate, limit = project(Figures(True, 1.0, (40.0, 40.0), 2.0), 4)
    assert (round(rate), limit) == (25_000, "2 receivers")


class _Store:
    """A store that takes `room` appends, then refuses (its queue is full)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[Any] = []

    def append(self, records: Any) -> bool:
        """Take the records while there is room."""
        if self.room <= 0:
            return False
        self.room -= 1
        self.records.extend(records)
        return True


def test_the_main_side_counts_a_batch_as_the_single_process_listener_does() -> None:
    """BATCH frames fed to a ReceiverGroup (no processes): received and dropped come from
    the receiver, accepted/lines/escaped/lost from ingest; a full store's refusal counts
    under store_backlog (a batch is stored or refused whole, as one append); received =
    accepted + dropped."""
    from collector.ingest import Ids, Ingest
    from collector.listen.receivers import ReceiverGroup

    store = _Store(room=1)
    ingest = Ingest(Ids(), store)  # type: ignore[arg-type]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        group = ReceiverGroup(config(), ingest, [sock])
        items = [("10.0.0.1", ["a", "b"], "web", "d.1", None, 1, (), 3),
                 ("10.0.0.2", ["c"], None, None, None, 0, ("-- marker --",), 0),
                 ("10.0.0.3", ["refused"], None, None, None, 0, (), 0)]
        payload = FrameReader().feed(encode(receiver.BATCH, (4, {"replayed": 2}, items[:2]))
                                     + encode(receiver.BATCH, (1, {}, items[2:])))
        for kind, body in payload:
            group._frame(group._slots[0], kind, body)
    stats = group.stats
    assert (stats.datagrams, stats.datagrams_accepted, stats.lines, stats.escaped) == (
        5, 2, 3, 1)
    assert stats.dropped == {"replayed": 2, "store_backlog": 1}
    assert stats.lines_dropped == {"store_backlog": 1}
    assert stats.lost == {("web", "d.1"): 3}
    assert [r.line for r in store.records] == ["a", "b", "-- marker --", "c"]
    assert stats.datagrams == stats.datagrams_accepted + sum(stats.dropped.values())
    assert group.spread() == [5]
