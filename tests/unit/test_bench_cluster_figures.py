"""The cluster benchmark's pure figures: histogram quantiles from `/metrics`, CPU shares,
the limit sentence and the projection for more cores (no processes, no sockets)."""

from __future__ import annotations

import math

import pytest

from bench.cluster_failover import (
    LEADER_METRIC,
    gauge,
    probe_line,
    probes_delivered,
    refusal,
)
from bench.cluster_trial import Setup, TrialResult
from bench.cpu import CpuWindow, limit_note, nodes_ceiling, split_node_cost, us_per_line
from bench.harness import Verdict
from bench.histogram import buckets, merge, quantile

NAME = "collector_cluster_publish_seconds"


def exposed(counts: dict[str, float]) -> dict[str, float]:
    """/metrics as CollectorProcess.metrics() returns it, for bucket counts by `le`."""
    metrics = {f'{NAME}_bucket{{le="{le}"}}': value for le, value in counts.items()}
    metrics[f"{NAME}_count"] = counts["+Inf"]
    metrics[f"{NAME}_sum"] = 1.0
    metrics["collector_store_lines_committed_total"] = 5.0
    return metrics


def test_buckets_are_read_in_bound_order_with_inf_last() -> None:
    """Only the histogram's `_bucket` series, sorted by bound, `+Inf` as infinity."""
    metrics = exposed({"0.01": 6, "0.001": 2, "+Inf": 10, "0.005": 4})
    assert buckets(metrics, NAME) == [(0.001, 2), (0.005, 4), (0.01, 6), (math.inf, 10)]
    assert buckets(metrics, "collector_other_seconds") == []


def test_buckets_with_more_labels_are_summed_per_bound() -> None:
    """A histogram with a label beside `le` gives one series per bound."""
    metrics = {f'{NAME}_bucket{{le="0.5",node="a"}}': 1.0,
               f'{NAME}_bucket{{le="0.5",node="b"}}': 2.0,
               f'{NAME}_bucket{{le="+Inf",node="a"}}': 3.0}
    assert buckets(metrics, NAME) == [(0.5, 3.0), (math.inf, 3.0)]


def test_a_bucket_without_le_is_an_error() -> None:
    """A malformed series is reported, not read as some bound."""
    with pytest.raises(ValueError, match="le label"):
        buckets({f'{NAME}_bucket{{node="a"}}': 1.0}, NAME)


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    """10 observations: 2 up to 1 ms, 2 more up to 5 ms, 6 more up to 10 ms. The median
    (rank 5) is the first of the 6 in (5, 10] ms: 5 + 5 * 1/6 ms; p99 (rank 9.9) is
    5 + 5 * 5.9/6 ms; p10 (rank 1) is half-way into the first bucket, from 0."""
    series = buckets(exposed({"0.001": 2, "0.005": 4, "0.01": 10, "+Inf": 10}), NAME)
    assert quantile(series, 0.5) == pytest.approx(0.005 + 0.005 / 6)
    assert quantile(series, 0.99) == pytest.approx(0.005 + 0.005 * 5.9 / 6)
    assert quantile(series, 0.1) == pytest.approx(0.0005)


def test_quantile_skips_empty_buckets_and_caps_at_the_highest_finite_bound() -> None:
    """Ranks in an empty bucket move on to the next one that holds observations; a rank
    in `+Inf` answers the highest finite bound (a lower bound, as Prometheus does)."""
    series = [(0.001, 0.0), (0.005, 0.0), (0.01, 4.0), (math.inf, 5.0)]
    assert quantile(series, 0.0) == pytest.approx(0.005)
    assert quantile(series, 0.5) == pytest.approx(0.005 + 0.005 * 2.5 / 4)
    assert quantile(series, 0.99) == pytest.approx(0.01)


def test_quantile_of_nothing_is_nan_and_a_bad_fraction_an_error() -> None:
    """No observations: nan (printed as such), not 0; a fraction outside 0..1 raises."""
    assert math.isnan(quantile([], 0.5))
    assert math.isnan(quantile([(0.001, 0.0), (math.inf, 0.0)], 0.5))
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile([(math.inf, 1.0)], 1.5)


def test_merge_adds_the_nodes_histograms_bound_by_bound() -> None:
    """Two nodes' histograms become one with the counts added."""
    a = [(0.001, 1.0), (math.inf, 2.0)]
    b = [(0.001, 3.0), (math.inf, 3.0)]
    assert merge([a, b]) == [(0.001, 4.0), (math.inf, 5.0)]
    assert merge([]) == []


def window(by_group: dict[str, float], *, seconds: float = 10.0, busy: float = 0.0,
           cores: int = 2) -> CpuWindow:
    """A CPU window with the nats-servers as multi-threaded and two senders."""
    return CpuWindow(by_group, seconds, busy, cores, {"senders": 2},
                     frozenset(g for g in by_group if g.startswith("nats:")))


def test_shares_of_a_core_per_group_and_per_process() -> None:
    """9 s of CPU in 10 s is 0.9 of a core; a group of two processes is 0.45 each."""
    cpu = window({"a:main": 9.0, "senders": 9.0, "nats:n0": 3.0, "nats:n1": 1.0},
                 busy=19.0)
    assert cpu.core_share("a:main") == pytest.approx(0.9)
    assert cpu.per_process("senders") == pytest.approx(0.45)
    assert cpu.group_total("nats:") == pytest.approx(4.0)
    assert cpu.machine_share == pytest.approx(0.95)
    assert cpu.others == pytest.approx(0.0)
    group, share = cpu.busiest()
    assert group == "a:main"
    assert share == pytest.approx(0.9)


def test_limit_names_the_cores_when_the_machine_is_saturated() -> None:
    """All cores busy: the cores are the limit, whichever process is busiest."""
    cpu = window({"a:main": 6.0, "b:main": 6.0, "nats:n0": 6.0}, busy=19.5)
    note = limit_note(cpu)
    assert note.startswith("the machine's cores")
    assert "98 % of 2 cores" in note
    assert "a:main 60 %" in note


def test_limit_names_one_saturated_single_threaded_process() -> None:
    """The machine has room but one single-threaded process is at its core: that one."""
    cpu = window({"a:main": 9.5, "a:writer": 1.0, "nats:n0": 2.0}, busy=13.0)
    assert limit_note(cpu).startswith("one process at a core's limit: a:main (95 %)")


def test_a_busy_multithreaded_server_is_not_called_a_saturated_process() -> None:
    """nats-server can use several cores: 95 % of one is not its limit."""
    cpu = window({"a:main": 3.0, "nats:n0": 9.5}, busy=13.0)
    assert limit_note(cpu).startswith("not CPU")


def test_other_jobs_on_the_machine_are_reported() -> None:
    """Busy time beyond the measured processes is another job's, and said so."""
    cpu = window({"a:main": 2.0}, busy=12.0)
    assert "other jobs 100 % of a core" in limit_note(cpu)


def test_projected_ceiling_is_set_by_the_busiest_single_threaded_process() -> None:
    """100,000 lines in a 10 s window: a:main used 5 s (50 µs a line), so it would fill a
    core at 20,000 lines/s; the senders and a multi-threaded nats-server do not count."""
    cpu = window({"a:main": 5.0, "a:writer": 1.0, "senders": 20.0, "nats:n0": 9.0})
    group, ceiling = cpu.projected_ceiling(100_000)
    assert group == "a:main"
    assert ceiling == pytest.approx(20_000)
    assert math.isnan(cpu.projected_ceiling(0)[1])


def test_us_per_line() -> None:
    """CPU seconds over lines, in µs; nan with no lines."""
    assert us_per_line(0.5, 10_000) == pytest.approx(50.0)
    assert math.isnan(us_per_line(1.0, 0))


def test_refusal_picks_the_config_error_from_the_output() -> None:
    """The failover part names why the collector would not start."""
    output = ("collector exited with 2:\nerror: collector.ini:12: [app:bench] has alarm "
              "rules, and alarms in cluster mode are not built yet (docs/CLUSTER.md)\n")
    assert "alarms in cluster mode are not built yet" in refusal(output)
    assert refusal("collector exited with 1:\nboom\n") == "boom"
    assert refusal("") == "no output"


def test_split_node_cost_and_the_ceiling_it_gives() -> None:
    """30 µs a line with one node and 20 with each of two: receiving costs 20 µs per line
    received and materializing 10 per line of the cluster. With a core each, one node
    stops at 33,333 lines/s, two at 50,000, and no number of nodes passes 100,000."""
    receive, materialize = split_node_cost(30.0, 20.0)
    assert receive == pytest.approx(20.0)
    assert materialize == pytest.approx(10.0)
    assert nodes_ceiling(receive, materialize, 1) == pytest.approx(1e6 / 30)
    assert nodes_ceiling(receive, materialize, 2) == pytest.approx(50_000)
    assert nodes_ceiling(receive, materialize, 1000) < 100_000
    assert math.isinf(nodes_ceiling(0.0, 0.0, 2))


def test_the_leader_gauge_is_read_with_or_without_labels_and_not_by_prefix() -> None:
    """`collector_cluster_alarms_leader 1` or with a label reads 1; a longer metric name
    that starts the same (a changes counter) is not that gauge."""
    assert gauge({LEADER_METRIC: 1.0}, LEADER_METRIC) == 1.0
    assert gauge({LEADER_METRIC + '{node="a"}': 1.0}, LEADER_METRIC) == 1.0
    assert gauge({LEADER_METRIC + "_changes_total": 4.0}, LEADER_METRIC) == 0.0


def test_probes_are_counted_per_round_from_the_webhook_messages() -> None:
    """Each probe of the round is counted as often as it was delivered; other rounds'
    probes and other alarms are not, and seq=1 is not seq=12."""
    messages = [probe_line("r0", 1), probe_line("r0", 12), probe_line("r0", 1),
                probe_line("r1", 2), "ALARM warm-up 1764512345.6", "something else"]
    assert probes_delivered(messages, "r0") == {1: 2, 12: 1}
    assert probes_delivered(messages, "r1") == {2: 1}
    assert probes_delivered(messages, "r2") == {}


def trial(committed: list[int], *, visible_after: float, drops: int = 0, sent: int = 1000,
          lag: float = 1.0) -> TrialResult:
    """A two-node trial at 1000 lines/s for 1 s with the given outcome."""
    cpu = window({"a:main": 0.01, "b:main": 0.01, "nats:n0": 0.02})
    return TrialResult(Setup("two", 2, cluster=True), Verdict(1000, sent, min(committed), 1.0,
                                                              0.0),
                       committed, cpu, cpu, visible_after, (1.0, 2.0), drops, 0, ["a", "b"],
                       messages=50, lag=lag)


def test_a_trial_holds_only_with_every_line_on_every_node_in_time_and_none_twice() -> None:
    """Every line within the lag holds; the same 0.5 s past a 0.25 s lag is LATE; a line
    missing on one node is a loss; more lines than sent on a node is DOUBLED (it could hide
    a loss)."""
    good = trial([1000, 1000], visible_after=0.5)
    assert (good.held, good.mark) == (True, "held")
    assert good.end_to_end == pytest.approx(1000 / 1.5)
    assert good.lines_per_message == pytest.approx(20.0)
    late = trial([1000, 1000], visible_after=0.5, lag=0.25)
    assert (late.held, late.mark) == (False, "LATE")
    lost = trial([1000, 999], visible_after=math.nan)
    assert (lost.held, lost.mark) == (False, "loss")
    doubled = trial([1000, 1001], visible_after=math.nan)
    assert (doubled.held, doubled.mark) == (False, "DOUBLED")


def test_a_wait_given_up_on_drops_reports_an_upper_bound() -> None:
    """With 100 lines dropped by the kernel the count was cut short: the share shown is
    what was not certainly lost, 90 %, not the partial count's 30 %."""
    cut = trial([300, 350], visible_after=math.nan, drops=100)
    assert cut.gave_up
    assert cut.everywhere == pytest.approx(0.9)
    assert not trial([1000, 1000], visible_after=0.1).gave_up
    assert trial([1000, 1000], visible_after=0.1).everywhere == pytest.approx(1.0)
