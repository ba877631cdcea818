"""Small pure parts: ids, rate limiting, /proc/net/udp, metrics text, times, API params."""

from __future__ import annotations

import gc
import time

import pytest

from collector.api.params import LogsRequest, parse_logs_params
from collector.client.tail import format_line
from collector.ingest import Ids
from collector.listen.kernel import parse_udp_table
from collector.listen.ratelimit import SenderLimiter
from collector.metrics import counter, exposition, histogram, histogram_families
from collector.record import Record
from collector.server import gcpolicy
from collector.timespec import duration_seconds, parse_time

UDP_TABLE = "\n".join([
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode ref pointer drops",
    "  433: 0100007F:06B5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0  "
    "      0 912345 2 0000000000000000 17",
    "  434: 0100007F:06B6 00000000:0000 07 00000000:00000000 00:00000000 00000000     0  "
    "      0 912346 2 0000000000000000 0",
])


def test_ids_are_time_based_unique_and_increasing() -> None:
    """Ids track the microsecond clock and never repeat, even past a larger last id."""
    ids = Ids()
    first = ids.take(3)
    assert abs(first - time.time_ns() // 1000) < 5_000_000
    assert ids.take(1) == first + 3 or ids.last > first + 3
    ahead = Ids(last=10**17)
    assert ahead.take(2) == 10**17 + 1
    assert ahead.take(1) == 10**17 + 3


def test_sender_limiter() -> None:
    """A sender gets `rate` per second with a one-second burst; others are separate."""
    limiter = SenderLimiter(rate=2)
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", 0.0)
    assert limiter.allow("a", 0.5)
    assert not limiter.allow("a", 0.5)


def test_proc_net_udp() -> None:
    """Drops are read by socket inode from the last column."""
    assert parse_udp_table(UDP_TABLE) == {912345: 17, 912346: 0}
    assert parse_udp_table("") == {}
    assert parse_udp_table("sl local_address\n 1: x y\n") == {}


def test_prometheus_text() -> None:
    """Counters with escaped labels, histograms with cumulative buckets and no `_created`
    series, through prometheus-client's exposition."""
    latency = histogram("h_seconds", "hist", (0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        latency.observe(value)
    total = counter("c_total", "help", ["reason"])
    total.add_metric(['a"b\n'], 3)
    text = exposition(lambda: [total, *histogram_families(latency)]).decode()
    assert 'c_total{reason="a\\"b\\n"} 3.0' in text
    assert 'h_seconds_bucket{le="0.1"} 1.0' in text
    assert 'h_seconds_bucket{le="1.0"} 2.0' in text
    assert 'h_seconds_bucket{le="+Inf"} 3.0' in text
    assert "h_seconds_count 3.0" in text
    assert "# TYPE h_seconds histogram" in text
    assert "_created" not in text


def test_times() -> None:
    """Durations ago, Unix seconds and ISO 8601."""
    assert parse_time("15m", now=1000.0) == 100.0
    assert parse_time("1732470000") == 1732470000.0
    assert parse_time("2024-11-24T18:20:00Z") == 1732472400.0
    assert parse_time("2024-11-24T18:20:00") == 1732472400.0
    assert parse_time("yesterday-ish") is None
    assert parse_time("500ms", now=1000.0) == 999.5


def test_one_duration_parser_for_config_and_queries() -> None:
    """Config values and "ago" filters read durations alike: units, a bare number as
    seconds, ASCII digits only, nothing infinite."""
    assert duration_seconds("90") == 90.0
    assert duration_seconds("500ms") == 0.5
    assert duration_seconds(" 2 W ") == 14 * 86400.0
    assert duration_seconds("1.5h") == 5400.0
    for bad in ("", "m", "-5s", "5x", "\u0665s", "9" * 400, "1e3s", "nan"):
        assert duration_seconds(bad) is None, bad


@pytest.mark.parametrize(("params", "error"), [
    ({"limit": "x"}, "limit"),
    ({"limit": "100000"}, "limit"),
    ({"since": "whenever"}, "since"),
    ({"regex": "a("}, "regex"),
    ({"status": "5yy"}, "status"),
])
def test_bad_params_explain_themselves(params: dict[str, str], error: str) -> None:
    """Bad query parameters give an error naming the parameter."""
    result = parse_logs_params(params)
    assert isinstance(result, str)
    assert result.startswith(error)


def test_params() -> None:
    """Good parameters become a query; n is limit's alias."""
    result = parse_logs_params({"app": "a", "n": "5", "follow": "1", "after": "7",
                                "status": "500"})
    assert isinstance(result, LogsRequest)
    assert result.follow
    assert (result.query.app, result.query.limit, result.query.after,
            result.query.status) == ("a", 5, 7, 500)


def test_tail_line_format() -> None:
    """Heroku's shape: time, app[source]: line; colour only when asked."""
    record = Record(1, 1732472400.5, "shop", "web.1", "h", "crypto", "hello")
    assert format_line(record, colour=False) == \
        "2024-11-24T18:20:00.500000+00:00 shop[web.1]: hello"
    assert "\x1b[" in format_line(record, colour=True)


def test_the_gc_policy_freezes_start_up_and_collects_less_often() -> None:
    """After start-up the collector freezes what exists and raises generation 0's threshold
    (records waiting for the store's ack must not be scanned every few hundred lines)."""
    kept = ["built at start-up"]
    previous = gcpolicy.apply()
    try:
        assert gc.get_threshold() == (gcpolicy.GENERATION0, *gcpolicy.OLDER)
        assert previous[0] < gcpolicy.GENERATION0
        assert gc.get_freeze_count() > 0
        # Frozen: in no generation a collection scans.
        assert not any(obj is kept for generation in (0, 1, 2)
                       for obj in gc.get_objects(generation=generation))
    finally:
        gc.unfreeze()
        gc.set_threshold(*previous)
