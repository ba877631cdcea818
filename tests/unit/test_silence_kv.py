"""The pure parts of the cluster's silences (alarms.silence_kv): a silence's KV value and
the node's copy of the bucket, fed values and deletions at revisions as a watch would."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from alarms.silence_kv import Mirror, decode, encode
from alarms.silence_store import KEEP_ENDED
from collector.cluster.kv import Item
from collector.errors import StoreError
from tests.unit.test_silences import NOW, note, silence


def test_a_value_round_trips_every_field() -> None:
    """`decode(encode(s))` is `s`, matchers, expiry and all."""
    made = silence(alarm="hook", source=r"^web\.\d+$", match="5\\d\\d", condition="log",
                   created_by="ana")
    made.expired_at, made.expired_by = NOW + 5, "bo"
    assert decode(encode(made)) == made


@given(comment=st.text(max_size=50).filter(str.strip))
def test_any_comment_round_trips(comment: str) -> None:
    """Whatever text the comment holds comes back as it was."""
    made = silence(comment=comment)
    assert decode(encode(made)).comment == comment


@pytest.mark.parametrize("value", [b"", b"{not json", b"[]", b'"sil"', b'{"app":"shop"}',
                                   b'{"id":"sil_1","surprise":1}', b"\xff\xfe"])
def test_a_value_that_is_no_silence_is_a_store_error(value: bytes) -> None:
    """Not JSON, not an object, fields missing or unknown: a StoreError naming it."""
    with pytest.raises(StoreError, match="unreadable silence"):
        decode(value)


def test_the_copy_keeps_the_latest_revision_of_each_key() -> None:
    """An older revision arriving after a newer one (the watch behind this node's own
    write) changes nothing; a newer one replaces it; a deletion drops the key."""
    mirror = Mirror()
    made = silence()
    ended = dataclasses.replace(made, expired_at=NOW + 1, expired_by="bo")
    mirror.wrote(ended, 5)
    mirror.apply(Item(made.id, encode(made), 4))
    assert mirror.get(made.id) == (ended, 5)
    assert list(mirror.silences()) == [ended]
    later = dataclasses.replace(ended, comment="later")
    mirror.apply(Item(made.id, encode(later), 6))
    assert mirror.get(made.id) == (later, 6)
    mirror.apply(Item(made.id, b"", 5, deleted=True))
    assert len(mirror) == 1
    mirror.apply(Item(made.id, b"", 7, deleted=True))
    assert mirror.get(made.id) is None
    assert len(mirror) == 0


def test_an_unreadable_value_is_left_out_counted_and_logged() -> None:
    """A value this version cannot read replaces nothing silently: the key leaves the
    copy (it matches nothing), and `silence_unreadable` names it."""
    mirror = Mirror()
    made = silence()
    mirror.apply(Item(made.id, encode(made), 1))
    with capture_logs() as logs:
        mirror.apply(Item(made.id, b'{"version":2}', 2))
    assert mirror.get(made.id) is None
    assert mirror.unreadable == 1
    assert [(e["event"], e["key"], e["revision"]) for e in logs] == [
        ("silence_unreadable", made.id, 2)]


def test_stale_lists_only_those_ended_more_than_keep_ended_ago() -> None:
    """Ended (by time or expiry) more than KEEP_ENDED ago: forgotten on the next add;
    active ones and those ended lately: kept."""
    mirror = Mirror()
    active, recent, old, expired_old = (silence() for _ in range(4))
    recent.ends_at = NOW - KEEP_ENDED + 60
    old.ends_at = NOW - KEEP_ENDED - 1
    expired_old.expired_at = NOW - KEEP_ENDED - 1
    for revision, made in enumerate((active, recent, old, expired_old), start=1):
        mirror.apply(Item(made.id, encode(made), revision))
    assert sorted(mirror.stale(NOW)) == sorted([(old.id, 3), (expired_old.id, 4)])
    assert mirror.get(active.id) is not None
    assert active.matches(note())


def test_the_copy_version_moves_with_every_change_and_only_then() -> None:
    """A matcher indexes the copy again when `version` moves: every write, newer value,
    deletion and clear moves it; a stale revision does not."""
    mirror = Mirror()
    made = silence()
    seen = [mirror.version]
    mirror.wrote(made, 3)
    seen.append(mirror.version)
    mirror.apply(Item(made.id, encode(made), 2))  # older than the copy's: ignored
    assert mirror.version == seen[-1]
    mirror.apply(Item(made.id, encode(dataclasses.replace(made, comment="x")), 4))
    seen.append(mirror.version)
    mirror.apply(Item(made.id, b"", 5, deleted=True))
    seen.append(mirror.version)
    mirror.clear()
    seen.append(mirror.version)
    assert seen == sorted(set(seen))
