"""The publisher's ordering and settling, the listener's deferred counting, the bring-up
backoff and the cluster's setting checks, byte-fed: the NATS side is an in-memory stream
with JetStream's two rules that matter here (message-id de-duplication and
`Nats-Expected-Last-Subject-Sequence`); the e2e tier runs the real one."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from collector.cluster.batch import decode
from collector.cluster.bringup import backoff, bring_up
from collector.cluster.connection import Connection, _trailing_int
from collector.cluster.errors import ClusterError, OutOfSequence
from collector.cluster.publisher import MAX_BATCH_LINES, Publisher
from collector.cluster.spool import Spool
from collector.config.model import ClusterConfig, ListenerConfig
from collector.errors import ConfigError, Location
from collector.ingest import Ids, Ingest, Settle
from collector.listen.decoders import make_decoder
from collector.listen.udp import DatagramListener
from collector.record import Record
from tests.support.settling import Settling

SUBJECT = "logs.a"


class Stream:
    """An in-memory stream: de-duplicates by message id, refuses a publish whose
    expected last subject sequence is not the subject's last, and can be down or lose
    the ack of a stored message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes]] = []
        self.down = False
        self.lose_acks = 0
        self.connected = True

    def _last(self, subject: str) -> int:
        return max((seq for seq, (s, _, _) in enumerate(self.messages, 1) if s == subject),
                   default=0)

    async def publish(self, subject: str, body: bytes, msg_id: str, wait: float,
                      expected_last: int | None = None) -> int:
        """Store (or recognise) one message, as JetStream would."""
        await asyncio.sleep(0)
        if self.down:
            raise ClusterError("publish not acknowledged: timeout")
        if expected_last is not None and expected_last != self._last(subject):
            last = self._last(subject)
            raise OutOfSequence(f"wrong last sequence: {last}", last)
        for seq, (_, stored_id, _) in enumerate(self.messages, 1):
            if stored_id == msg_id:
                return seq
        self.messages.append((subject, msg_id, body))
        if self.lose_acks:
            self.lose_acks -= 1
            raise ClusterError("publish not acknowledged: timeout")
        return len(self.messages)

    async def last_on_subject(self, subject: str, wait: float = 2.0) -> tuple[int, str]:
        """The subject's last sequence and message id."""
        last = self._last(subject)
        return (last, self.messages[last - 1][1]) if last else (0, "")

    async def msg_id_at(self, seq: int, wait: float = 2.0) -> str:
        """The message id at `seq`."""
        return self.messages[seq - 1][1] if 0 < seq <= len(self.messages) else ""

    def lines(self) -> list[str]:
        """Every stored line, in stream order."""
        return [r.line for _, _, body in self.messages for r in decode(body)[1]]


def rec(text: str) -> list[Record]:
    """One record."""
    return [Record(1, None, "web", "s", "h", "socket", text)]


def made(tmp_path: Path, stream: Stream) -> tuple[Publisher, Spool]:
    """A publisher of node `a` over `stream`, and its spool."""
    spool = Spool(tmp_path / "spool.sqlite", 1 << 20)
    return Publisher(stream, spool, "a", SUBJECT, retry_pause=0.01), spool


async def settled(stream: Stream, publisher: Publisher, spool: Spool, lines: int,
                  within: float = 5.0) -> None:
    """Wait until the stream or spool holds `lines` lines and nothing is buffered."""
    deadline = asyncio.get_running_loop().time() + within
    while publisher.buffered or publisher.inflight or (
            len(stream.lines()) + spool.lines < lines):
        assert asyncio.get_running_loop().time() < deadline, "publisher stuck"
        await asyncio.sleep(0.01)


def recorder(calls: list[tuple[str, bool]], name: str) -> Settle:
    """A settle that notes (name, ok)."""
    return lambda ok: calls.append((name, ok))


async def test_settle_waits_for_the_ack_and_batches_land_in_order(tmp_path: Path) -> None:
    """A group is settled True only once its batch is stored; batches land in order."""
    stream = Stream()
    publisher, spool = made(tmp_path, stream)
    calls: list[tuple[str, bool]] = []
    for i in range(20):
        assert publisher.append(rec(f"l{i}"), recorder(calls, f"l{i}"))
    assert calls == []  # taken is not accepted
    publisher.start()
    await settled(stream, publisher, spool, 20)
    await publisher.stop()
    assert stream.lines() == [f"l{i}" for i in range(20)]
    assert sorted(calls) == sorted((f"l{i}", True) for i in range(20))
    assert publisher.acked_lines == 20


async def test_an_outage_spools_in_order_and_drains_in_order(tmp_path: Path) -> None:
    """Lines taken while NATS is down are settled once spooled, and once it is back they
    land after everything before them, in the order taken, each once."""
    stream = Stream()
    publisher, spool = made(tmp_path, stream)
    publisher.start()
    oks: list[bool] = []
    for i in range(5):
        publisher.append(rec(f"l{i}"), oks.append)
    await settled(stream, publisher, spool, 5)
    stream.down = True
    for i in range(5, 40):
        publisher.append(rec(f"l{i}"), oks.append)
        await asyncio.sleep(0.003)
    await settled(stream, publisher, spool, 40)
    assert spool.lines > 0
    assert oks == [True] * 40  # spooled counts: the node's promise to publish
    stream.down = False
    deadline = asyncio.get_running_loop().time() + 5
    while spool.lines or len(stream.lines()) < 40:
        assert asyncio.get_running_loop().time() < deadline, "spool not drained"
        await asyncio.sleep(0.01)
    await publisher.stop()
    assert stream.lines() == [f"l{i}" for i in range(40)]


async def test_a_batch_stored_but_unacknowledged_is_not_stored_again(tmp_path: Path) -> None:
    """The ack of a stored batch is lost: the retry is refused as out of sequence, found
    at the subject's end by its message id, and counted stored; nothing lands twice."""
    stream = Stream()
    stream.lose_acks = 1
    publisher, spool = made(tmp_path, stream)
    publisher.start()
    publisher.append(rec("first"))
    publisher.append(rec("second"))
    deadline = asyncio.get_running_loop().time() + 5
    while len(stream.lines()) < 2 or spool.lines:
        assert asyncio.get_running_loop().time() < deadline, "not published"
        await asyncio.sleep(0.01)
    await publisher.stop()
    assert stream.lines() == ["first", "second"]
    assert publisher.out_of_sequence == 1


async def test_another_publisher_on_the_subject_is_followed(tmp_path: Path) -> None:
    """Something else moved the subject (a stale node of the same name): the publisher
    follows its last sequence and goes on, rather than retrying for ever."""
    stream = Stream()
    publisher, spool = made(tmp_path, stream)
    publisher.start()
    publisher.append(rec("one"))
    await settled(stream, publisher, spool, 1)
    await stream.publish(SUBJECT, stream.messages[0][2], "other.1", 1.0)
    publisher.append(rec("two"))
    await settled(stream, publisher, spool, 3)
    await publisher.stop()
    assert stream.lines() == ["one", "one", "two"]


async def test_a_spool_that_cannot_be_written_settles_false(tmp_path: Path) -> None:
    """NATS down and the spool failing: the group is told it is lost, and counted."""
    stream = Stream()
    stream.down = True
    spool = Spool(tmp_path / "s.sqlite", 1 << 20)
    publisher = Publisher(stream, spool, "a", SUBJECT, retry_pause=0.01)
    spool.close()  # every write now fails
    oks: list[bool] = []
    publisher.append(rec("gone"), oks.append)
    publisher.start()
    deadline = asyncio.get_running_loop().time() + 5
    while not oks:
        assert asyncio.get_running_loop().time() < deadline, "never settled"
        await asyncio.sleep(0.01)
    await publisher.stop()
    assert oks == [False]
    assert publisher.lost_lines == 1


def test_a_cluster_listener_counts_lines_when_settled_not_when_taken() -> None:
    """The listener's accepted counters move on settle(True); settle(False) counts the
    datagram and its lines as dropped (`publish_lost`)."""
    config = ListenerConfig("plain", "127.0.0.1", 0, "socket", "web", "s")
    store = Settling()
    ingest = Ingest(Ids(), store)  # type: ignore[arg-type]
    assert ingest.settles
    listener = DatagramListener(config, make_decoder(config), ingest)
    listener.datagram_received(b"one\ntwo", ("127.0.0.1", 1))
    listener.datagram_received(b"three", ("127.0.0.1", 1))
    assert [r.line for r in store.records] == ["one", "two", "three"]
    assert (listener.stats.datagrams_accepted, listener.stats.lines) == (0, 0)
    store.pending[0](True)
    assert (listener.stats.datagrams_accepted, listener.stats.lines) == (1, 2)
    store.pending[1](False)
    assert (listener.stats.datagrams_accepted, listener.stats.lines) == (1, 2)
    assert listener.stats.dropped["publish_lost"] == 1
    assert listener.stats.lines_dropped["publish_lost"] == 1


async def test_a_group_larger_than_a_message_is_split_in_order_and_settled_once(
        tmp_path: Path) -> None:
    """A batch of more lines than one message takes goes out as several messages, in
    order, and its one settle is called once, after the last of them is stored."""
    stream = Stream()
    publisher, spool = made(tmp_path, stream)
    calls: list[tuple[str, bool]] = []
    count = MAX_BATCH_LINES * 2 + 5
    records = [Record(1, None, "web", "s", "h", "socket", f"l{i}") for i in range(count)]
    assert publisher.append(records, recorder(calls, "big"))
    assert publisher.append(rec("after"), recorder(calls, "after"))
    publisher.start()
    await settled(stream, publisher, spool, count + 1)
    await publisher.stop()
    assert len(stream.messages) >= 3
    assert stream.lines() == [f"l{i}" for i in range(count)] + ["after"]
    assert sorted(calls) == [("after", True), ("big", True)]


def test_backoff_doubles_to_a_ceiling() -> None:
    """0.5, 1, 2, 4, 8, then 10 s for ever (no overflow however long NATS is away)."""
    assert [backoff(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff(10_000) == 10.0


async def test_bring_up_retries_cluster_errors_until_the_step_succeeds() -> None:
    """Each ClusterError is retried after the backoff; the attempts are returned."""
    tries: list[int] = []

    async def step() -> None:
        tries.append(1)
        if len(tries) < 3:
            raise ClusterError("no servers available")

    assert await bring_up(step, first=0.001, most=0.002) == 3


def test_wrong_last_sequence_is_parsed_from_the_description() -> None:
    """JetStream says "wrong last sequence: N"; anything else reads as -1."""
    assert _trailing_int("wrong last sequence: 42") == 42
    assert _trailing_int("wrong last sequence") == -1
    assert _trailing_int(None) == -1


@pytest.mark.parametrize("key", ["creds", "tls-ca", "tls-cert"])
def test_unreadable_creds_or_tls_files_are_config_errors(tmp_path: Path, key: str) -> None:
    """A creds or TLS file that is not there is a ConfigError naming file, line and key,
    raised before any connection is tried (so it is not retried as an outage)."""
    missing = tmp_path / "missing.pem"
    config = ClusterConfig(nats=("nats://127.0.0.1:1",), node="a",
                           location=Location("c.ini", 7))
    if key == "creds":
        config = replace(config, creds=missing)
    elif key == "tls-ca":
        config = replace(config, tls_ca=missing)
    else:
        config = replace(config, tls_cert=missing)
    with pytest.raises(ConfigError) as raised:
        Connection(config).options()
    assert raised.value.location == Location("c.ini", 7, key)
    assert "missing.pem" in str(raised.value)


async def test_a_creds_file_with_no_server_answering_is_a_bounded_cluster_error(
        tmp_path: Path) -> None:
    """With a creds file (nats-py then needs `nkeys`) and no server answering, one
    attempt to connect ends within its bound as a ClusterError that says why, for the
    bring-up loop to retry; not an ImportError, not an endless wait."""
    creds = tmp_path / "user.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.sig\n"
                     "------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n"
                     "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4\n"
                     "------END USER NKEY SEED------\n")
    config = ClusterConfig(nats=("nats://127.0.0.1:1",), node="a", creds=creds)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ClusterError, match="no server answered within 1 s"):
        await Connection(config).open(within=1.0)
    assert asyncio.get_running_loop().time() - started < 5.0


async def test_a_spooled_batch_a_previous_run_did_store_is_not_stored_again(
        tmp_path: Path) -> None:
    """A run stopped while its last batch was in flight spools it; that batch had landed.
    The next run finds it at the end of its subject by message id and drops it from the
    spool instead of storing it twice (past the de-duplication window too)."""
    stream = Stream()
    first, spool = made(tmp_path, stream)
    first.start()
    first.append(rec("landed"))
    await settled(stream, first, spool, 1)
    await first.stop()
    _, msg_id, body = stream.messages[0]
    spool.push(msg_id, body, 1)  # as `stop` does with a batch in hand
    again = Publisher(stream, spool, "a", SUBJECT, retry_pause=0.01)
    again.start()
    again.append(rec("next"))
    await settled(stream, again, spool, 2)
    deadline = asyncio.get_running_loop().time() + 5
    while spool.batches:
        assert asyncio.get_running_loop().time() < deadline, "spool not drained"
        await asyncio.sleep(0.01)
    await again.stop()
    assert stream.lines() == ["landed", "next"]
