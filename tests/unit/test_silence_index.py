"""Silence matching through SilenceIndex (first_match): the same answer as a scan of every
silence in order, whatever the silences, at any number of them and when RE2 cannot
search the patterns at once."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alarms.silences as silences_module
from alarms.notification import Notification, new_id
from alarms.silences import CHUNK, Silence, SilenceIndex, _Patterns, first_match
from collector.regex import Pattern, compile_regex

NOW = 1_800_000_000.0
PATTERNS = ("^web", r"web\.1$", "(?i)error", "err", r"\d{3}", "x|y", "^$", "a.*b",
            r"\bfoo\b", "[^a-z]", "(?s).", r"^\w+\.\d+$", "É", "(?m)^b")
TEXTS = st.text(alphabet="abewr.1x5EROfo É\n", max_size=12)


def scan(silences: list[Silence], notification: Notification, now: float
         ) -> Silence | None:
    """The first active, matching silence, found the plain way (the specification)."""
    return next((s for s in silences if s.active(now) and s.matches(notification)), None)


def made(number: int, app: str = "a", *, alarm: str | None = None,
         condition: str | None = None, source: str | None = None,
         match: str | None = None, starts: float = NOW - 60, ends: float = NOW + 60,
         expired: float | None = None) -> Silence:
    """A silence with the given matchers and times."""
    return Silence(id=f"sil_{number}", app=app, alarm=alarm, source=source,
                   condition=condition, match=match, starts_at=starts, ends_at=ends,
                   comment="test", created_by="test", created_at=starts,
                   expired_at=expired)


def note(app: str = "a", alarm: str = "hook", condition: str = "log",
         source: str = "web.1", message: str = "") -> Notification:
    """A notification with the given fields."""
    return Notification(id=new_id(), alarm=alarm, plugin="webhook", app=app, source=source,
                        condition=condition, message=message, created_at=NOW)


SILENCES = st.lists(st.builds(
    lambda number, app, alarm, condition, source, match, starts, length, expired: made(
        number, app, alarm=alarm, condition=condition, source=source, match=match,
        starts=NOW + starts, ends=NOW + starts + length,
        expired=None if expired is None else NOW + expired),
    st.integers(0, 10**6), st.sampled_from(("a", "b")),
    st.sampled_from((None, "hook", "ops")), st.sampled_from((None, "log", "segfault")),
    st.none() | st.sampled_from(PATTERNS), st.none() | st.sampled_from(PATTERNS),
    st.integers(-20, 20), st.integers(1, 40), st.none() | st.integers(-20, 20)),
    max_size=12)


NOTIFICATIONS = st.builds(note, st.sampled_from(("a", "b", "c")),
                          st.sampled_from(("hook", "ops")), st.sampled_from(("log", "rate")),
                          TEXTS, TEXTS)


@settings(max_examples=300, deadline=None)
@given(silences=SILENCES, notification=NOTIFICATIONS, at=st.integers(-25, 25))
def test_the_index_answers_as_a_scan_in_order(silences: list[Silence],
                                              notification: Notification, at: int) -> None:
    """For any silences and notification, the index finds the very silence a scan of
    them in order finds first (or none when the scan finds none)."""
    expected = scan(silences, notification, NOW + at)
    assert SilenceIndex(tuple(silences)).first(notification, NOW + at) is expected
    assert first_match(silences, notification, NOW + at) is expected


def test_patterns_beyond_one_chunk_are_all_found() -> None:
    """More distinct patterns than one RE2 search takes (CHUNK): a silence whose pattern
    sits in any chunk holds, the first one in order wins, and a text none names passes."""
    count = 2 * CHUNK + 10
    silences = [made(n, match=f"token-{n}x") for n in range(count)]
    for wanted in (0, CHUNK - 1, CHUNK, count - 1):
        notification = note(message=f"saw token-{wanted}x and token-{count - 1}x")
        assert first_match(silences, notification, NOW) is silences[wanted]
    assert first_match(silences, note(message="token-x"), NOW) is None


def test_patterns_too_large_to_search_at_once_are_checked_one_by_one() -> None:
    """Patterns each valid but together beyond RE2's memory for one search: the index
    says "not known" and checks each silence, so it still finds the one that holds."""
    big = [r"\pL{400}" + str(n) for n in range(12)]
    assert _Patterns(big).found("x") is None
    silences = [made(n, match=pattern) for n, pattern in enumerate(big)]
    silences.append(made(99, source=r"web\.1"))
    assert first_match(silences, note(message="short"), NOW) is silences[-1]
    assert first_match(silences, note(source="cron", message="short"), NOW) is None


def test_a_changed_set_of_silences_is_seen_at_once() -> None:
    """first_match keeps its index while given the same silences and rebuilds it when
    one is added or replaced (an expiry replaces the silence with an ended copy)."""
    holding = made(1, match="boom")
    assert first_match([holding], note(message="boom"), NOW) is holding
    other = made(2, match="bang")
    assert first_match([holding, other], note(message="bang"), NOW) is other
    ended = made(1, match="boom", expired=NOW - 1)
    assert first_match([ended, other], note(message="boom"), NOW) is None
    # An expiry made in place (the same object) is read at each match.
    holding.expired_at = NOW - 1
    assert first_match([holding, other], note(message="boom"), NOW) is None


def test_matching_again_compiles_no_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    """More silence patterns than a small cache holds (the plain scan compiled each of
    them again at every notification once there were more than 1,024): once the
    silences are indexed, matching notifications compiles no pattern one by one."""
    compiled: list[str] = []

    def counting(pattern: str) -> Pattern:
        compiled.append(pattern)
        return compile_regex(pattern)

    monkeypatch.setattr(silences_module, "compile_regex", counting)
    silences = [made(n, match=f"never-{n}x", source=f"^cron\\.{n}$") for n in range(1100)]
    silences.append(made(1100, match="boom"))
    assert first_match(silences, note(message="quiet"), NOW) is None
    compiled.clear()
    for _ in range(3):
        assert first_match(silences, note(message="quiet"), NOW) is None
        assert first_match(silences, note(message="boom"), NOW) is silences[-1]
    assert len(compiled) <= 1, compiled[:5]
