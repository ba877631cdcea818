"""The alarm state that senders control stays within its bounds under a flood of distinct
sources and messages, and what is evicted is counted (and, where it is an alarm, sent or
kept rather than lost)."""

from __future__ import annotations

from alarms.bounds import DEFAULT, Bounds
from alarms.engine import AlarmEngine
from alarms.notification import Notification
from tests.unit.alarm_support import record, rules_from

RULES = ("alarm = page cmd:true\nalarm-segfault = page\nalarm-silence = page 60 ^s\n"
         "log-alarm = page boom\n")


def segfault_line(pid: int) -> str:
    """uWSGI's segfault line for `pid`."""
    return f"!!! uWSGI process {pid} got Segmentation Fault !!!"


def test_a_flood_of_distinct_sources_levels_off_at_the_bounds() -> None:
    """200,000 sources, each logging one segfault line (a new context, silence entry,
    regex-match cache entry and backtrace assembly each; the evicted assemblies become
    alarms, each a new anti-storm state): every structure ends at its default bound and
    every eviction is counted."""
    fired = [0]

    def sink(_: Notification) -> None:
        fired[0] += 1

    engine = AlarmEngine([rules_from(RULES)], sink, clock=lambda: 1000.0)
    total = 200_000
    for start in range(0, total, 1000):
        engine.consume([record(segfault_line(i), 1000.0 + i / 1000, source=f"s{i}")
                        for i in range(start, start + 1000)])
    sources, storms = DEFAULT.sources, DEFAULT.storms
    assert engine.sizes() == {"context": sources, "silence": sources,
                              "silence_match": sources, "segfault": sources,
                              "storm": storms}
    assert fired[0] == total - sources  # each evicted assembly was sent, none lost
    assert engine.evictions.counts == {
        "context": total - sources, "silence": total - sources,
        "silence_match": total - sources, "segfault": total - sources,
        "storm": fired[0] - storms}


def test_an_evicted_backtrace_is_sent_with_what_it_has() -> None:
    """When more sources are assembling a backtrace than the bound, the oldest assembly is
    sent at once, marked incomplete, rather than forgotten; the others complete."""
    fired: list[Notification] = []
    engine = AlarmEngine([rules_from(RULES)], fired.append, clock=lambda: 1000.0,
                         bounds=Bounds(sources=2))
    engine.consume([record(segfault_line(1), 1000.0, source="s1"),
                    record(segfault_line(2), 1000.1, source="s2"),
                    record(segfault_line(3), 1000.2, source="s3")])
    (evicted,) = fired
    assert (evicted.source, evicted.condition) == ("s1", "segfault")
    assert evicted.message == f"{segfault_line(1)}\n(no backtrace received)"
    assert evicted.facts["complete"] is False
    engine.consume([record("*** backtrace of 3 ***\n", 1000.3, source="s3"),
                    record("*** end of backtrace ***", 1000.3, source="s3")])
    assert [n.source for n in fired] == ["s1", "s3"]
    assert fired[1].facts["complete"] is True
    assert engine.evictions.counts["segfault"] == 1


def test_a_source_that_keeps_logging_is_not_evicted_from_the_silence_watch() -> None:
    """The silence watch forgets the source that logged least recently: one that keeps
    logging through a flood of one-line sources still raises its silence alarm."""
    fired: list[Notification] = []
    engine = AlarmEngine([rules_from(RULES)], fired.append, clock=lambda: 1000.0,
                         bounds=Bounds(sources=10))
    for i in range(100):
        engine.consume([record("hi", 1000.0 + i / 100, source="s.steady"),
                        record("hi", 1000.0 + i / 100, source=f"s{i}")])
    engine.tick(1100.5)
    silent = {n.source for n in fired if n.condition == "silence"}
    assert "s.steady" in silent
    assert len(silent) == 10
    assert engine.evictions.counts["silence"] == 100 + 1 - 10
