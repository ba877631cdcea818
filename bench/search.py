"""The search every benchmark uses for its figure: the highest rate a system holds.

Start at a rate any machine holds, double while the rate is held, then bisect between the
last rate held and the first one not held until they are within a resolution of each
other. If even the start is not held, halve down to a floor first. The search is a state
machine (`next_rate`, `record`) with no clock and no I/O, so that a benchmark can take
turns between two searches (the figure and its baseline see the same drift in the machine's
load) and a test can drive it with a synthetic oracle. Every search is bounded in trials;
the drivers below also stop when the caller's time is up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Oracle = Callable[[float], bool]


@dataclass(frozen=True)
class SearchSpec:
    """Where a search starts, how far it may go, and when it stops.

    `resolution` is relative: the search ends when the first rate not held is within
    `resolution` of the last rate held (5 %: the figure is within 5 % below the true one).
    """

    start: float = 2_000.0
    floor: float = 125.0
    ceiling: float = 2_000_000.0
    resolution: float = 0.05
    max_trials: int = 24

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.start <= self.ceiling:
            raise ValueError("a search needs 0 < floor <= start <= ceiling")
        if not 0 < self.resolution < 1:
            raise ValueError("resolution is a fraction between 0 and 1")
        if self.max_trials < 1:
            raise ValueError("max_trials must be at least 1")


@dataclass(frozen=True)
class Trial:
    """One rate tried and whether it was held."""

    rate: float
    held: bool


@dataclass
class RateSearch:
    """One search in progress: ask `next_rate()`, try it, `record()` the verdict."""

    spec: SearchSpec = field(default_factory=SearchSpec)
    trials: list[Trial] = field(default_factory=list)
    good: float | None = None  # the highest rate held so far
    bad: float | None = None  # the lowest rate not held so far

    def next_rate(self) -> float | None:
        """The rate to try next; None once the search is over."""
        spec = self.spec
        if len(self.trials) >= spec.max_trials:
            return None
        if self.good is None and self.bad is None:
            return spec.start
        if self.bad is None:
            assert self.good is not None
            return None if self.good >= spec.ceiling else min(2 * self.good, spec.ceiling)
        if self.good is None:
            return None if self.bad <= spec.floor else max(self.bad / 2, spec.floor)
        if self.converged:
            return None
        return round((self.good + self.bad) / 2)

    def record(self, rate: float, held: bool) -> None:
        """Note a trial's verdict."""
        self.trials.append(Trial(rate, held))
        if held:
            self.good = rate if self.good is None else max(self.good, rate)
        else:
            self.bad = rate if self.bad is None else min(self.bad, rate)

    @property
    def converged(self) -> bool:
        """Whether the figure is known to the resolution (or is pinned at a bound)."""
        if self.good is not None and self.bad is not None:
            return self.bad - self.good <= self.spec.resolution * self.good
        if self.good is not None:
            return self.good >= self.spec.ceiling
        return self.bad is not None and self.bad <= self.spec.floor

    @property
    def done(self) -> bool:
        """Whether `next_rate()` has nothing more to offer."""
        return self.next_rate() is None

    @property
    def figure(self) -> float:
        """The highest rate held (0 if none was)."""
        return self.good or 0.0

    def describe(self) -> str:
        """The figure with what is known about it, for the summary line."""
        state = ("within the resolution" if self.converged
                 else "NOT converged (bounded in trials or time): a lower bound")
        above = f", first rate not held {self.bad:.0f}" if self.bad is not None else ""
        ceiling = " (the search's ceiling)" if self.figure >= self.spec.ceiling else ""
        return (f"{self.figure:.0f}{ceiling} after {len(self.trials)} trials{above}; "
                f"{state}")


def find(oracle: Oracle, spec: SearchSpec | None = None,
         out_of_time: Callable[[], bool] = lambda: False) -> RateSearch:
    """Search with one oracle until the search is over or `out_of_time()`."""
    search = RateSearch(spec or SearchSpec())
    interleave([(search, oracle)], out_of_time)
    return search


def interleave(searches: Sequence[tuple[RateSearch, Oracle]],
               out_of_time: Callable[[], bool] = lambda: False) -> None:
    """Run several searches by turns (one trial each per round) until all are over or
    `out_of_time()`; the order alternates each round, so neither always goes first."""
    order = list(searches)
    while not out_of_time():
        progressed = False
        for search, oracle in order:
            rate = search.next_rate()
            if rate is None or out_of_time():
                continue
            search.record(rate, oracle(rate))
            progressed = True
        if not progressed:
            return
        order.reverse()
