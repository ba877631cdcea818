"""The benchmarks' rate search, driven by synthetic oracles (no clock, no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.search import Oracle, RateSearch, SearchSpec, find, interleave

SPEC = SearchSpec()


def holds_below(limit: float) -> tuple[list[float], Oracle]:
    """An oracle that holds every rate up to `limit`, and the list of rates it was asked."""
    asked: list[float] = []

    def oracle(rate: float) -> bool:
        asked.append(rate)
        return rate <= limit

    return asked, oracle


@given(st.floats(min_value=500, max_value=1_000_000))
def test_finds_the_limit_within_the_resolution_anywhere(limit: float) -> None:
    """For a limit anywhere from 500 to 1,000,000 lines/s the figure is at or below it and
    within the resolution of it, in a bounded number of trials."""
    asked, oracle = holds_below(limit)
    search = find(oracle, SPEC)
    assert search.converged
    assert search.figure <= limit
    assert limit - search.figure <= SPEC.resolution * search.figure
    assert len(asked) <= 16 < SPEC.max_trials
    assert search.bad is not None
    assert search.bad > limit


@pytest.mark.parametrize("limit", [500, 1_999, 2_000, 75_000, 1_000_000])
def test_figure_is_a_rate_that_was_held(limit: float) -> None:
    """The figure is one of the rates tried and held, not an interpolation; the start
    itself (2,000) is found exactly."""
    asked, oracle = holds_below(limit)
    search = find(oracle, SPEC)
    assert search.figure in asked
    assert search.figure <= limit
    assert [t.rate for t in search.trials] == asked
    if limit == 2_000:
        assert search.figure == 2_000


def test_nothing_held_ends_at_the_floor_with_zero() -> None:
    """A system that holds nothing ends the search at the floor, figure 0, converged."""
    asked, oracle = holds_below(0)
    search = find(oracle, SPEC)
    assert search.figure == 0
    assert min(asked) == SPEC.floor
    assert search.converged
    assert search.done
    assert len(asked) <= 6


def test_everything_held_ends_at_the_ceiling() -> None:
    """A system that holds every rate ends at the ceiling and says so."""
    asked, oracle = holds_below(float("inf"))
    search = find(oracle, SPEC)
    assert search.figure == SPEC.ceiling
    assert max(asked) == SPEC.ceiling
    assert "ceiling" in search.describe()


def test_trials_are_bounded_even_for_a_fine_resolution() -> None:
    """max_trials caps the search; a cut-short search says it is a lower bound."""
    spec = SearchSpec(resolution=1e-9, max_trials=7)
    asked, oracle = holds_below(123_456)
    search = find(oracle, spec)
    assert len(asked) == 7
    assert not search.converged
    assert "lower bound" in search.describe()


def test_out_of_time_stops_the_search() -> None:
    """The caller's time budget is checked before every trial."""
    asked, oracle = holds_below(50_000)
    search = find(oracle, SPEC, out_of_time=lambda: len(asked) >= 3)
    assert asked == [2_000, 4_000, 8_000]
    assert search.figure == 8_000
    assert not search.converged


def test_interleave_takes_turns_and_finishes_both() -> None:
    """Two searches alternate (the order flips each round) and each finds its own limit."""
    calls: list[str] = []

    def oracle(name: str, limit: float) -> Oracle:
        def held(rate: float) -> bool:
            calls.append(name)
            return rate <= limit
        return held

    fast, slow = RateSearch(SPEC), RateSearch(SPEC)
    interleave([(fast, oracle("fast", 80_000)),
                (slow, oracle("slow", 3_000))])
    assert calls[:4] == ["fast", "slow", "slow", "fast"]
    assert 80_000 / 1.05 <= fast.figure <= 80_000
    assert 3_000 / 1.05 <= slow.figure <= 3_000
    assert fast.done
    assert slow.done


def test_bad_spec_is_refused() -> None:
    """A spec whose start lies outside its bounds, or a resolution of 0, is an error."""
    with pytest.raises(ValueError, match="floor <= start <= ceiling"):
        SearchSpec(start=10, floor=100)
    with pytest.raises(ValueError, match="resolution"):
        SearchSpec(resolution=0)
