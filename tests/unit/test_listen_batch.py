"""The listener's batch path: many datagrams per wake-up, one batch through ingest."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from pathlib import Path

from collector.config.model import ListenerConfig
from collector.decode.result import Decoded, Decoder, Lines
from collector.ingest import Ids, Ingest, Origin
from collector.listen.decoders import make_decoder
from collector.listen.recv import _recv_loop, receive
from collector.listen.udp import MAX_BATCH, MAX_READS, DatagramListener, start_listener
from collector.record import Record
from collector.store.sqlite import SqliteStore
from tests.support.net import free_udp_port
from tests.support.settling import Settling

LOCAL = "127.0.0.1"


class Seen:
    """A consumer that keeps every batch of records it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []

    def consume(self, records: Sequence[Record]) -> None:
        """Keep the batch."""
        self.batches.append(list(records))

    @property
    def lines(self) -> list[str]:
        """Every line seen, in order."""
        return [record.line for batch in self.batches for record in batch]

    @property
    def ids(self) -> list[int]:
        """Every id seen, in order."""
        return [record.id for batch in self.batches for record in batch]


class Exploding:
    """The real decoder, except that it raises on the payload b"boom" (a decoder bug)."""

    def __init__(self, inner: Decoder) -> None:
        self.format = inner.format
        self._inner = inner

    def decode(self, data: bytes, peer: str, now: float) -> Decoded:
        """Decode as the real one does, or fail."""
        if data == b"boom":
            raise RuntimeError("decoder bug")
        return self._inner.decode(data, peer, now)


def listener_for(tmp_path: Path, config: ListenerConfig, max_queue: int = 1_000_000
                 ) -> tuple[DatagramListener, Seen]:
    """A listener over a real (unopened) SqliteStore queue, with a recording consumer."""
    seen = Seen()
    ingest = Ingest(Ids(), SqliteStore(tmp_path, max_queue=max_queue), [seen])
    return DatagramListener(config, Exploding(make_decoder(config)), ingest), seen


def test_each_datagram_of_a_batch_meets_its_own_fate(tmp_path: Path) -> None:
    """Good, oversize, rate-limited and decoder-breaking datagrams in one batch: each is
    counted by its reason, the good ones are stored in batch order with increasing ids,
    and the consumer sees them in one call."""
    config = ListenerConfig("plain", LOCAL, 0, "socket", "web", "s", max_datagram=64,
                            sender_rate=3)
    listener, seen = listener_for(tmp_path, config)
    listener.datagrams_received([
        (b"a\nb", LOCAL), (b"x" * 65, "127.0.0.2"), (b"boom", LOCAL),
        (b"x1", "127.0.0.3"), (b"x2", "127.0.0.3"), (b"x3", "127.0.0.3"),
        (b"x4", "127.0.0.3"), (b"c", LOCAL)])
    stats = listener.stats
    assert seen.lines == ["a", "b", "x1", "x2", "x3", "c"]
    assert len(seen.batches) == 1
    assert seen.ids == sorted(set(seen.ids))
    assert (stats.datagrams, stats.datagrams_accepted, stats.lines) == (8, 5, 6)
    assert dict(stats.dropped) == {"oversize": 1, "rate_limited": 1, "internal_error": 1}


def test_batches_and_single_datagrams_share_one_id_sequence(tmp_path: Path) -> None:
    """A datagram handed on alone (`datagram_received`) and batches after it: records in
    arrival order, ids strictly increasing across them."""
    config = ListenerConfig("plain", LOCAL, 0, "socket", "web", "s")
    listener, seen = listener_for(tmp_path, config)
    listener.datagram_received(b"one", (LOCAL, 1))
    listener.datagrams_received([(b"two\nthree", LOCAL), (b"four", LOCAL)])
    listener.datagrams_received([(b"five", LOCAL)])
    assert seen.lines == ["one", "two", "three", "four", "five"]
    assert seen.ids == sorted(set(seen.ids))
    assert [len(batch) for batch in seen.batches] == [1, 3, 1]
    assert (listener.stats.datagrams_accepted, listener.stats.lines) == (4, 5)


def test_a_refused_batch_is_counted_as_store_backlog(tmp_path: Path) -> None:
    """When the store's queue is full, every datagram of the batch it refuses is dropped
    as `store_backlog` with its lines, and nothing of it reaches the consumers."""
    config = ListenerConfig("plain", LOCAL, 0, "socket", "web", "s")
    listener, seen = listener_for(tmp_path, config, max_queue=2)
    listener.datagrams_received([(b"a\nb", LOCAL), (b"c", LOCAL)])
    listener.datagrams_received([(b"d\ne", LOCAL), (b"boom", LOCAL), (b"f", LOCAL)])
    stats = listener.stats
    assert seen.lines == ["a", "b", "c"]
    assert (stats.datagrams, stats.datagrams_accepted, stats.lines) == (5, 2, 3)
    assert stats.dropped == {"store_backlog": 2, "internal_error": 1}
    assert stats.lines_dropped == {"store_backlog": 3}


def test_accept_many_leaves_out_only_the_datagram_it_cannot_build(tmp_path: Path) -> None:
    """A datagram whose records cannot be built is reported by its index; the others are
    stored in order, with ids increasing."""
    seen = Seen()
    ingest = Ingest(Ids(), SqliteStore(tmp_path), [seen])
    origin = Origin("plain", "socket", "web", "s")
    broken = Lines([None])  # type: ignore[list-item]
    taken, failed = ingest.accept_many(origin, [
        (LOCAL, Lines(["a"], app="shop")), (LOCAL, broken), (LOCAL, Lines(["b", "c"]))])
    assert taken
    assert list(failed) == [1]
    assert isinstance(failed[1], TypeError)
    assert seen.lines == ["a", "b", "c"]
    assert [r.app for r in seen.batches[0]] == ["shop", "web", "web"]
    assert seen.ids == sorted(set(seen.ids))


def test_a_cluster_batch_is_handed_on_at_once_and_settled_once() -> None:
    """In cluster mode a wake-up's datagrams go to the publisher in one append with one
    settle, which counts every datagram of the batch: accepted once safe, `publish_lost`
    if lost; ids rise along the batch."""
    config = ListenerConfig("plain", LOCAL, 0, "socket", "web", "s")
    store = Settling()
    listener = DatagramListener(config, make_decoder(config),
                                Ingest(Ids(), store))  # type: ignore[arg-type]
    listener.datagrams_received([(b"one\ntwo", LOCAL), (b"three", LOCAL), (b"four", LOCAL)])
    assert [r.line for r in store.records] == ["one", "two", "three", "four"]
    assert [r.id for r in store.records] == sorted({r.id for r in store.records})
    (settle,) = store.pending
    assert (listener.stats.datagrams_accepted, listener.stats.lines) == (0, 0)
    settle(True)
    assert (listener.stats.datagrams_accepted, listener.stats.lines) == (3, 4)
    listener.datagrams_received([(b"five", LOCAL), (b"six\nseven", LOCAL)])
    store.pending[1](False)
    assert (listener.stats.datagrams_accepted, listener.stats.lines) == (3, 4)
    assert listener.stats.dropped["publish_lost"] == 2
    assert listener.stats.lines_dropped["publish_lost"] == 3


def test_receive_takes_waiting_datagrams_in_order_up_to_the_count() -> None:
    """`receive` returns at most max_count datagrams, oldest first, with the sender's
    host; a longer datagram is cut to max_size; [] once none waits. The pure-Python loop
    does the same."""
    for read in (receive, _recv_loop):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            server.bind((LOCAL, 0))
            server.setblocking(False)
            for payload in (b"1", b"2", b"3", b"4", b"0123456789"):
                client.sendto(payload, server.getsockname())
            assert read(server, 3, 8) == [(b"1", LOCAL), (b"2", LOCAL), (b"3", LOCAL)]
            assert read(server, 3, 8) == [(b"4", LOCAL), (b"01234567", LOCAL)]
            assert read(server, 3, 8) == []


async def test_a_started_listener_reads_bursts_in_order_and_stops_on_close(
        tmp_path: Path) -> None:
    """A burst larger than one wake-up's reads arrives once each, in order; close()
    stops reading and closes the socket (a second close is a no-op)."""
    port = free_udp_port()
    config = ListenerConfig("plain", LOCAL, port, "socket", "web", "s", rcvbuf=4 << 20)
    seen = Seen()
    ingest = Ingest(Ids(), SqliteStore(tmp_path), [seen])
    listener = await start_listener(config, make_decoder(config), ingest)
    assert listener.inode() is not None
    sent = [f"line {i}" for i in range(2 * MAX_BATCH * MAX_READS + 7)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for line in sent:
            client.sendto(line.encode(), (LOCAL, port))
    for _ in range(500):
        if listener.stats.datagrams >= len(sent):
            break
        await asyncio.sleep(0.01)
    assert seen.lines == sent
    assert len(seen.batches) < len(sent) // 100
    assert listener.close()
    assert not listener.close()
    assert listener.inode() is None
