"""The cluster status's pure parts: heartbeat documents from figures, latency quantiles
from histogram buckets, the roster of nodes seen, and the health verdict fed with
documents and stream views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ClusterInfo, PeerInfo, StreamConfig, StreamInfo, StreamState

from collector.client.cluster import format_status
from collector.cluster.heartbeat import Figures, Tracker, buckets_of, growing, quantile
from collector.cluster.kv import Item
from collector.cluster.status import Roster, node_views, reasons, status_document
from collector.cluster.survey import ConsumerView, StreamView, stream_view
from collector.config.load import load_config
from collector.errors import ConfigError
from collector.metrics import DELIVERY_BUCKETS, histogram

NOW = 1_800_000_000.0


def figures(at: float, **changes: Any) -> Figures:
    """Figures of node a at time `at`."""
    base: dict[str, Any] = {"node": "a", "boot": "b00t", "started_at": NOW - 100,
                            "time": at, "interval": 5.0}
    return Figures(**{**base, **changes})


def heartbeat(name: str, age: float = 1.0, **changes: Any) -> dict[str, Any]:
    """A heartbeat document of node `name` written `age` seconds before NOW."""
    tracker = Tracker()
    document = tracker.document(figures(NOW - age, node=name, stream_last_seq=10,
                                        applied_seq=10))
    return {**document, **changes}


def healthy_stream(name: str = "LOGS") -> StreamView:
    """An R3 stream with its three replicas current."""
    return StreamView(name=name, replicas=3, leader="n0", current=("n0", "n1", "n2"))


def test_tracker_rates_spool_age_and_lag_over_successive_figures() -> None:
    """lines/s over the last interval, the time the spool became non-empty (kept while it
    stays so, cleared when it drains), the lag from the stream's last sequence."""
    tracker = Tracker()
    first = tracker.document(figures(NOW, received=100, spool_batches=2, spool_lines=40,
                                     spool_bytes=900, stream_last_seq=50, applied_seq=45))
    assert first["lines_per_second"] is None
    assert first["spool"] == {"batches": 2, "lines": 40, "bytes": 900, "since": NOW}
    assert first["materializer"] == {"applied_seq": 45, "lag": 5, "lag_growing": False}
    second = tracker.document(figures(NOW + 5, received=600, spool_batches=1,
                                      stream_last_seq=None))
    assert second["lines_per_second"] == 100.0
    assert second["spool"]["since"] == NOW
    assert second["materializer"]["lag"] is None
    third = tracker.document(figures(NOW + 10, received=600))
    assert third["lines_per_second"] == 0.0
    assert third["spool"]["since"] is None
    assert json.loads(json.dumps(third)) == third


def test_latency_quantiles_come_from_the_publisher_histogram_over_a_minute() -> None:
    """p50/p99 interpolate within buckets as Prometheus does, over the last minute only;
    none without publishes."""
    latency = histogram("t_seconds", "t", DELIVERY_BUCKETS)
    tracker = Tracker()
    assert tracker.document(figures(NOW, latency=buckets_of(latency)))[
        "publish_seconds"]["p50"] is None
    for _ in range(99):
        latency.observe(0.003)   # in (0.001, 0.005]
    latency.observe(20.0)        # in (10, 30]
    doc = tracker.document(figures(NOW + 5, latency=buckets_of(latency)))
    p50, p99 = doc["publish_seconds"]["p50"], doc["publish_seconds"]["p99"]
    assert p50 == pytest.approx(0.001 + 0.004 * 50 / 99)
    assert p99 == pytest.approx(0.005)
    for _ in range(10):
        latency.observe(20.0)
    tail = tracker.document(figures(NOW + 10, latency=buckets_of(latency)))
    assert tail["publish_seconds"]["p99"] > 10.0
    later = tracker.document(figures(NOW + 70, latency=buckets_of(latency)))
    assert later["publish_seconds"]["p50"] is None


def test_quantile_edges() -> None:
    """No observations: None; a rank in +Inf: the largest finite bound."""
    assert quantile(0.5, ()) is None
    assert quantile(0.5, ((1.0, 0.0), (float("inf"), 0.0))) is None
    assert quantile(0.99, ((1.0, 1.0), (float("inf"), 100.0))) == 1.0
    assert quantile(0.5, ((1.0, 2.0), (2.0, 2.0), (float("inf"), 2.0))) == 0.5


def test_lag_is_growing_only_when_it_rose_at_every_recent_beat() -> None:
    """Six rises in a row are growth; a plateau or a dip is not."""
    assert growing([1, 2, 3, 4, 5, 6, 7])
    assert not growing([1, 2, 3, 4, 5, 6])
    assert not growing([1, 2, 3, 3, 5, 6, 7])
    assert not growing([0] * 10)


def test_roster_reports_a_vanished_node_missing_and_forgets_one_that_left() -> None:
    """A node seen before and absent now is missing; its `left` heartbeat or a deletion
    marker clears it; an hour later it is forgotten anyway."""
    roster = Roster()
    docs = {name: json.dumps(heartbeat(name, 0.0)).encode() for name in "abc"}
    roster.observe([Item(name, value, 1) for name, value in docs.items()], NOW)
    assert roster.missing(["a", "b", "c"]) == {}
    left = json.dumps(heartbeat("b", 0.0, left=True)).encode()
    roster.observe([Item("a", docs["a"], 2), Item("b", left, 2),
                    Item("c", b"", 3, deleted=True)], NOW + 1)
    assert roster.missing(["a"]) == {}
    roster.observe([Item("a", docs["a"], 2)], NOW + 2)
    assert roster.missing([]) == {"a": NOW}
    roster.observe([], NOW + 3601)
    assert roster.missing([]) == {}


def test_node_views_up_stale_left_and_missing() -> None:
    """A heartbeat within three intervals is up; older, stale; one marked left, left; a
    node only in the roster, missing."""
    rows = node_views([heartbeat("a", 2.0), heartbeat("b", 16.0),
                       heartbeat("c", 1.0, left=True)], {"d": NOW - 30}, NOW)
    assert [(r["node"], r["state"], r["age"]) for r in rows] == [
        ("a", "up", 2.0), ("b", "stale", 16.0), ("c", "left", 1.0), ("d", "missing", 30.0)]


def test_verdict_healthy_when_everything_is_fine() -> None:
    """Nodes up, streams with a leader and every replica current, servers answering:
    no reasons, exit-0 healthy."""
    nodes = node_views([heartbeat("a"), heartbeat("b")], {}, NOW)
    servers = [{"url": "nats://n0:4222", "answers": True}]
    assert reasons(nodes, [healthy_stream(), healthy_stream("KV_nodes")], servers, [],
                   NOW) == []
    doc = status_document("a", NOW, documents=[heartbeat("a")], missing={},
                          streams=[healthy_stream()], servers=servers, connected={},
                          errors=[])
    assert doc["healthy"] is True


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "node b: missing, last heartbeat 30s ago"),
    ("stale", "node b: last heartbeat 20s ago"),
    ("spool", "node b: spool not empty for 61s (7 lines)"),
    ("lag", "node b: materializer lag growing (900 messages)"),
    ("leaderless", "stream LOGS: no leader"),
    ("replicas", "stream LOGS: 1 of 3 replicas current, lagging: n1, offline: n2"),
    ("server", "nats server nats://n2:4222: does not answer (refused)"),
    ("error", "cannot list streams: TimeoutError"),
])
def test_verdict_names_each_kind_of_trouble(case: str, expected: str) -> None:
    """Each unhealthy condition gives its own reason, naming the node, stream or server."""
    documents = [heartbeat("a")]
    missing: dict[str, float] = {}
    streams = [healthy_stream()]
    servers = [{"url": "nats://n2:4222", "answers": True}]
    errors: list[str] = []
    if case == "missing":
        missing = {"b": NOW - 30}
    elif case == "stale":
        documents.append(heartbeat("b", 20.0))
    elif case == "spool":
        documents.append(heartbeat("b", spool={"batches": 1, "lines": 7, "bytes": 70,
                                               "since": NOW - 61}))
    elif case == "lag":
        documents.append(heartbeat("b", materializer={"applied_seq": 1, "lag": 900,
                                                      "lag_growing": True}))
    elif case == "leaderless":
        streams = [StreamView(name="LOGS", replicas=1, leader=None, current=("x",))]
    elif case == "replicas":
        streams = [StreamView(name="LOGS", replicas=3, leader="n0", current=("n0",),
                              lagging=("n1",), offline=("n2",))]
    elif case == "server":
        servers = [{"url": "nats://n2:4222", "answers": False, "error": "refused"}]
    else:
        errors = ["cannot list streams: TimeoutError"]
    doc = status_document("a", NOW, documents=documents, missing=missing, streams=streams,
                          servers=servers, connected={}, errors=errors)
    assert doc["healthy"] is False
    assert doc["reasons"] == [expected]
    assert "cluster UNHEALTHY" in format_status(doc)
    assert expected in format_status(doc)


def test_a_spool_that_drains_within_a_minute_is_not_a_reason() -> None:
    """A spool that has held something for under a minute is an outage being ridden out."""
    nodes = node_views([heartbeat("b", spool={"batches": 1, "lines": 7, "bytes": 70,
                                              "since": NOW - 30})], {}, NOW)
    assert reasons(nodes, [], [], [], NOW) == []


def test_stream_view_from_nats_stream_info() -> None:
    """The leader counts as current; peers are current, lagging or offline; a server
    outside a cluster leads its streams itself."""
    info = StreamInfo(
        config=StreamConfig(name="LOGS", num_replicas=3),
        state=StreamState(messages=10, bytes=2048, first_seq=1, last_seq=10,
                          consumer_count=2),
        cluster=ClusterInfo(leader="n0", replicas=[
            PeerInfo(name="n1", current=True, offline=False),
            PeerInfo(name="n2", current=False, offline=True)]))
    view = stream_view(info)
    assert (view.leader, view.current, view.lagging, view.offline) == (
        "n0", ("n0", "n1"), (), ("n2",))
    assert (view.messages, view.bytes, view.last_seq, view.consumer_count) == (
        10, 2048, 10, 2)
    single = stream_view(StreamInfo(config=StreamConfig(name="LOGS", num_replicas=1),
                                    state=StreamState(messages=0, bytes=0, first_seq=0,
                                                      last_seq=0, consumer_count=0),
                                    cluster=None))
    assert len(single.current) == single.replicas == 1
    with_consumer = StreamView(name="LOGS", replicas=1, leader="n0", current=("n0",),
                               consumers=(ConsumerView("alarms", 5, 2),))
    assert with_consumer.to_json()["consumers"] == [
        {"name": "alarms", "pending": 5, "ack_pending": 2, "lag": 7}]


def test_status_text_lists_nodes_servers_streams_and_consumers() -> None:
    """The table output names every part with its figures."""
    stream = StreamView(name="LOGS", replicas=3, leader="n0", current=("n0", "n1", "n2"),
                        messages=12, bytes=4096, consumers=(ConsumerView("alarms", 3, 1),))
    doc = status_document(
        "a", NOW, documents=[heartbeat("a", alarms_leader=True)], missing={},
        streams=[stream], servers=[{"url": "nats://n0:4222", "answers": True, "name": "n0",
                                    "version": "2.11.0"}],
        connected={"server_name": "n0"}, errors=[])
    text = format_status(doc)
    assert text.startswith("cluster healthy (as seen by node a at 2027-01-15T08:00:00Z)")
    assert "NODES\nnode  state  heartbeat" in text
    assert "nats://n0:4222  yes      n0    2.11.0   yes" in text
    assert "LOGS    n0      3         n0,n1,n2" in text
    assert "4.0KiB" in text
    assert "LOGS    alarms    4" in text
    assert "yes" in text.split("NODES")[1].split("\n")[2]


def test_heartbeat_interval_is_a_cluster_key(tmp_path: Path) -> None:
    """`heartbeat = 1` sets the interval (TTL three times that); 5 s by default; out of
    0.5 s to 60 s it is refused with file, line and key."""
    path = tmp_path / "c.ini"
    path.write_text("[cluster]\nnats = nats://h:1\nheartbeat = 1\n")
    cluster = load_config(path, env={}).cluster
    assert cluster is not None
    assert cluster.heartbeat == 1.0
    path.write_text("[cluster]\nnats = nats://h:1\n")
    default = load_config(path, env={}).cluster
    assert default is not None
    assert default.heartbeat == 5.0
    path.write_text("[cluster]\nnats = nats://h:1\nheartbeat = 2m\n")
    with pytest.raises(ConfigError, match=r"c\.ini:3: heartbeat: heartbeat must be 0\.5s"):
        load_config(path, env={})
