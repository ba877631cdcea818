"""The cluster's pure parts: the batch encoding, id assignment in stream order, the
applied-batch set, and the `[cluster]` config section."""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
from pathlib import Path

import pytest

from collector.cluster.batch import BatchId, decode, encode
from collector.cluster.checkpoint import Checkpoint, Position
from collector.cluster.errors import ClusterError
from collector.cluster.ids import assign
from collector.cluster.spool import Spool
from collector.config.load import load_config
from collector.config.model import ClusterConfig
from collector.errors import ConfigError, Location
from collector.record import Record
from collector.server.reload import needs_restart

BATCH = BatchId("node-a", "0badf00d", 7)


def records() -> list[Record]:
    """A plain line, a request line with every parsed field, a marker, odd text."""
    return [
        Record(1_700_000_000_000_001, None, "web", "uwsgi", "10.0.0.1", "socket", "hello"),
        Record(1_700_000_000_000_002, 1_700_000_000.25, "web", "uwsgi", "h", "crypto",
               "[pid: 4|app: 0] GET /x => 200", "log", "GET", "/x", 200, 1.5, 42, 4, 1),
        Record(1_700_000_000_000_003, None, "api", "shipper", "", "native",
               "3 lines lost", "marker"),
        Record(1_700_000_000_000_004, None, "api", "s", "", "native",
               'tab\there "quote" \\ snow\u2603 nul\x00 newline\n end'),
    ]


def test_batch_round_trip_keeps_every_field_but_the_id() -> None:
    """A decoded batch names its sender and gives back every record with id 0."""
    batch, got = decode(encode(BATCH, records()))
    assert batch == BATCH
    assert batch.msg_id == "node-a.0badf00d.7"
    expected = records()
    for record in expected:
        record.id = 0
    assert got == expected


def test_batch_carries_receive_times_not_ids() -> None:
    """The local id travels as the receive time only; the version is in the header."""
    body = encode(BATCH, records()[:1]).decode().split("\n")
    assert json.loads(body[0]) == {"v": 1, "node": "node-a", "boot": "0badf00d", "n": 7}
    assert json.loads(body[1])[0] == 1_700_000_000_000_001


def test_batch_fuzz_round_trips_and_garbage_is_a_cluster_error() -> None:
    """Random text round-trips; random bytes and mangled bodies raise ClusterError only."""
    rng = random.Random(9)
    alphabet = "ab \t\n\\\"'{}[],:\u00e9\u2603\x00\x7f"
    for _ in range(300):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        record = Record(0, rng.choice([None, rng.random()]), "a", "s", "h", "socket", line)
        assert decode(encode(BATCH, [record]))[1] == [record]
    body = encode(BATCH, records())
    for _ in range(500):
        mangled = bytearray(body)
        for _ in range(rng.randrange(1, 6)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        with contextlib.suppress(ClusterError):
            decode(bytes(mangled))
    for garbage in (b"", b"\xff", b"[]", b'{"v": 2}', b'{"v":1,"node":1,"boot":"b","n":1}',
                    encode(BATCH, []) + b"\n[1,2]"):
        with pytest.raises(ClusterError):
            decode(garbage)


def test_ids_follow_the_stream_clock_and_never_go_back() -> None:
    """`first = max(last + 1, timestamp)`: a clock that stands or goes back is bumped past
    the last id, so ids are monotonic and deterministic for the same messages."""
    messages = [(1_000_000, 3), (1_000_000, 2), (999_000, 1), (2_000_000, 4), (1_500_000, 0),
                (2_000_001, 1)]

    def run() -> list[tuple[int, int]]:
        last, out = 0, []
        for timestamp, count in messages:
            first, last = assign(last, timestamp, count)
            out.append((first, last))
        return out

    assert run() == run()
    assert run() == [(1_000_000, 1_000_002), (1_000_003, 1_000_004), (1_000_005, 1_000_005),
                     (2_000_000, 2_000_003), (2_000_004, 2_000_003), (2_000_004, 2_000_004)]


def test_applied_batches_are_seen_once_even_out_of_order() -> None:
    """A batch applied before earlier ones (a spooled batch resent late) is still a
    duplicate the second time, and the earlier ones are not."""
    position = Position()
    for n in (1, 2, 5, 3):
        assert not position.seen("a.b", n)
        position.mark("a.b", n)
    assert [position.seen("a.b", n) for n in range(1, 7)] == [True, True, True, False,
                                                              True, False]
    assert position.applied["a.b"] == [3, 5]
    position.mark("a.b", 4)
    assert position.applied["a.b"] == [5]


def write(tmp_path: Path, text: str) -> Path:
    """Write an ini file and return its path."""
    path = tmp_path / "collector.ini"
    path.write_text(text)
    return path


def test_cluster_section_with_every_key(tmp_path: Path) -> None:
    """Every key is read and typed; defaults fill what is not given."""
    path = write(tmp_path, "[cluster]\nnats = nats://127.0.0.1:4222, nats://10.0.0.2:4222\n"
                           "node = col-a.1\nreplicas = 1\nspool-size = 64M\n"
                           "creds = /etc/c.creds\ntls-ca = /ca\ntls-cert = /c\ntls-key = /k\n")
    cluster = load_config(path, env={}).cluster
    assert cluster == ClusterConfig(
        nats=("nats://127.0.0.1:4222", "nats://10.0.0.2:4222"), node="col-a.1", replicas=1,
        spool_size=64 << 20, creds=Path("/etc/c.creds"), tls_ca=Path("/ca"),
        tls_cert=Path("/c"), tls_key=Path("/k"), location=cluster.location if cluster else None)
    default = load_config(write(tmp_path, "[cluster]\nnats = nats://h:1\n"), env={}).cluster
    assert default is not None
    assert (default.replicas, default.spool_size) == (3, 1 << 30)
    assert default.node
    assert load_config(write(tmp_path, "[collector]\n"), env={}).cluster is None


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("[cluster]\nnats = nats://h:1\nbogus = 1\n", 3, "bogus", "unknown key"),
    ("[cluster]\nnats = http://h:1\n", 2, "nats", "nats://"),
    ("[cluster]\nnats = nats://h:1,\n", 2, "nats", "nats://"),
    ("[cluster]\nnats = nats://h:1\nnode = a b\n", 3, "node", "letters"),
    ("[cluster]\nnats = nats://h:1\nreplicas = 0\n", 3, "replicas", "at least"),
    ("[cluster]\nnats = nats://h:1\nreplicas = 6\n", 3, "replicas", "1 to 5"),
    ("[cluster]\nnats = nats://h:1\nspool-size = lots\n", 3, "spool-size", "size"),
    ("[cluster]\nnats = nats://h:1\ncreds =\n", 3, "creds", "empty"),
    ("[cluster]\nnats = nats://h:1\nnats = nats://h:2\n", 3, "nats", "once"),
])
def test_cluster_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int,
                                               key: str, words: str) -> None:
    """A bad `[cluster]` value points at where it was written."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.location == Location(str(path), line, key), caught.value
    assert words in str(caught.value)


def test_cluster_needs_nats_and_takes_alarm_rules(tmp_path: Path) -> None:
    """`nats` is required; alarm rules with `[cluster]` are taken (the leader evaluates
    them, alarms.cluster)."""
    with pytest.raises(ConfigError, match="needs nats"):
        load_config(write(tmp_path, "[cluster]\nnode = a\n"), env={})
    rules = ("[cluster]\nnats = nats://h:1\n[app:web]\nalarm = page cmd:/bin/true\n"
             "alarm-log = page ERROR\n")
    config = load_config(write(tmp_path, rules), env={})
    assert config.cluster is not None
    assert config.apps[0].has_conditions
    plain = "[cluster]\nnats = nats://h:1\n[app:web]\nalarm = page cmd:/bin/true\n"
    assert load_config(write(tmp_path, plain), env={}).cluster is not None


def test_cluster_changes_need_a_restart(tmp_path: Path) -> None:
    """A reload that changes `[cluster]` (or adds it) is restart-only."""
    one = load_config(write(tmp_path, "[cluster]\nnats = nats://h:1\nnode = a\n"), env={})
    same = load_config(write(tmp_path, "\n[cluster]\nnats = nats://h:1\nnode = a\n"), env={})
    two = load_config(write(tmp_path, "[cluster]\nnats = nats://h:1\nnode = b\n"), env={})
    none = load_config(write(tmp_path, "[collector]\n"), env={})
    assert needs_restart(one, same) == ()
    assert needs_restart(one, two) == ("[cluster]",)
    assert needs_restart(none, one) == ("[cluster]",)


def test_spool_is_a_bounded_fifo_that_survives_a_reopen(tmp_path: Path) -> None:
    """Batches come out oldest first with their message ids, the spool says `full` at its
    size, and a reopened spool (after a crash) still holds and counts what was left."""
    path = tmp_path / "spool.sqlite"
    spool = Spool(path, max_bytes=250)
    for n in range(3):
        spool.push(f"a.b.{n}", bytes([n]) * 100, lines=n + 1)
    assert (spool.batches, spool.lines, spool.bytes, spool.full) == (3, 6, 300, True)
    first = spool.first()
    assert first is not None
    assert (first.msg_id, first.body, first.lines) == ("a.b.0", b"\0" * 100, 1)
    spool.remove(first)
    assert not spool.full
    spool.close()
    again = Spool(path, max_bytes=250)
    assert (again.batches, again.lines, again.bytes) == (2, 5, 200)
    left = again.first()
    assert left is not None
    assert left.msg_id == "a.b.1"
    again.close()


def test_checkpoint_keeps_the_stream_identity_and_reads_an_older_file(
        tmp_path: Path) -> None:
    """The position is saved with the creation time of the stream it counts in, and a
    checkpoint written before that was kept still loads (identity unknown, "")."""
    old = tmp_path / "old.db"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE position (one INTEGER PRIMARY KEY CHECK (one = 1), "
               "seq INTEGER, last_id INTEGER, applied TEXT)")
    db.execute("INSERT INTO position VALUES (1, 7, 99, '{\"a.b\": [3]}')")
    db.commit()
    db.close()
    checkpoint = Checkpoint(old)
    assert checkpoint.load() == Position(7, 99, {"a.b": [3]}, "")
    checkpoint.save(Position(8, 100, {"a.b": [4]}, "2026-11-30T20:00:00+00:00"))
    checkpoint.close()
    again = Checkpoint(old)
    assert again.load() == Position(8, 100, {"a.b": [4]}, "2026-11-30T20:00:00+00:00")
    again.close()
