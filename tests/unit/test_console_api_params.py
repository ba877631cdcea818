"""Parameters of /v1/stats/volume and /v1/sources: defaults, ranges and the 400 texts."""

from __future__ import annotations

import pytest

from collector.api.sources import DEFAULT_SILENT, DEFAULT_WINDOW, parse_sources_params
from collector.api.volume import (
    MAX_BUCKETS,
    VolumeRequest,
    auto_step,
    parse_volume_params,
    status_class,
)

NOW = 1_800_000_000.0


def volume(**params: str) -> VolumeRequest | str:
    """parse_volume_params at a fixed now."""
    return parse_volume_params(params, now=NOW)


def test_volume_defaults_to_the_last_hour_by_minute() -> None:
    """No parameters: the hour up to now in 60 one-minute intervals, no filter."""
    parsed = volume()
    assert isinstance(parsed, VolumeRequest)
    assert (parsed.since, parsed.until, parsed.step) == (NOW - 3600, NOW, 60.0)
    assert parsed.query.status is None
    assert parsed.query.status_class is None


def test_volume_status_takes_a_code_or_a_class() -> None:
    """`503` filters exactly in the store; `5xx` (any case) is a class."""
    exact = volume(status="503")
    assert isinstance(exact, VolumeRequest)
    assert (exact.query.status, exact.query.status_class) == (503, None)
    wide = volume(status="5XX")
    assert isinstance(wide, VolumeRequest)
    assert (wide.query.status, wide.query.status_class) == (None, 5)
    assert volume(status="5x") == ("status: expected a whole number from 100 to 999, got "
                                   "'5x' or a class such as 5xx")


@pytest.mark.parametrize(("params", "error"), [
    ({"step": "0"}, "step: expected a duration such as 10s, 1m or 1h, got '0'"),
    ({"step": "soon"}, "step: expected a duration such as 10s, 1m or 1h, got 'soon'"),
    ({"step": "1s", "since": str(NOW - 7200), "until": str(NOW)},
     f"step: '1s' makes 7200 intervals over the range; at most {MAX_BUCKETS}"),
    ({"since": str(NOW), "until": str(NOW - 1)},
     f"since: must be before until ({NOW:.6f} >= {NOW - 1:.6f})"),
    ({"limit": "5"}, "unknown parameter 'limit'; this endpoint takes app, regex, since, "
                     "source, status, step, until"),
    ({"regex": "("}, None),
])
def test_volume_refuses_bad_parameters(params: dict[str, str], error: str | None) -> None:
    """Each bad parameter gets a 400 text naming it."""
    parsed = volume(**params)
    assert isinstance(parsed, str)
    if error is not None:
        assert parsed == error
    else:
        assert parsed.startswith("regex: ")


def test_auto_step_and_status_class() -> None:
    """Round steps giving at most 60 intervals; lines stacked by class, others apart."""
    assert [auto_step(s) for s in (60, 900, 3600, 86400)] == [1.0, 15.0, 60.0, 1800.0]
    assert auto_step(10 * 365 * 86400) == float(-(-10 * 365 * 86400 // 60))
    assert [status_class(s) for s in (None, 101, 200, 302, 404, 599, 600)] == [
        "other", "other", "2xx", "3xx", "4xx", "5xx", "other"]


def test_sources_parameters() -> None:
    """Window and silence threshold default to an hour and five minutes; bounded."""
    parsed = parse_sources_params({})
    assert not isinstance(parsed, str)
    assert (parsed.window, parsed.silent, parsed.app) == (DEFAULT_WINDOW, DEFAULT_SILENT,
                                                          None)
    assert parse_sources_params({"window": "7h"}) == (
        "window: expected a duration from 1s to 6h such as 15m, got '7h'")
    assert parse_sources_params({"silent": "x"}) == (
        "silent: expected a duration from 1s to 6h such as 15m, got 'x'")
