"""The replicated outbox's pure parts: keys, the stored value, and which of two writes of
one entry stands (the outbox itself runs on real NATS in tests/e2e/test_alarm_outbox_kv.py).
"""

from __future__ import annotations

import json
import re

import pytest

from alarms.notification import Notification, new_id
from alarms.outbox.base import Entry, State
from alarms.outbox.conflict import merged, resolve
from alarms.outbox.kvformat import decode, encode, key_for
from collector.errors import StoreError

# What nats-py accepts as a key.
VALID_KEY = re.compile(r"[-/_=.a-zA-Z0-9]+")


def entry(state: State = "pending", attempts: int = 0, updated_at: float = 10.0) -> Entry:
    """An entry of a fresh notification."""
    notification = Notification(id=new_id(), alarm="hook", plugin="webhook", app="shop",
                                source="web.1", condition="log", message="boom",
                                facts={"regex": ["b"]}, context=["x"], created_at=5.0)
    return Entry(notification, state=state, attempts=attempts, next_attempt=12.0,
                 last_error="HTTP 500", updated_at=updated_at)


def test_ids_are_their_own_keys_and_anything_else_maps_to_a_valid_one() -> None:
    """A `msg_` id is the key; other ids map to a valid key, the same each time, distinct
    from each other and from every id used as is."""
    plain = new_id()
    assert key_for(plain) == plain
    odd = ["a.b", "ü", "x y", "", ".lead", "*", ">", "a" * 300, "h.00"]
    keys = [key_for(i) for i in odd]
    assert all(VALID_KEY.fullmatch(k) and not k.startswith(".") and not k.endswith(".")
               for k in keys), keys
    assert keys == [key_for(i) for i in odd]
    assert len(set(keys)) == len(odd)
    assert not set(keys) & set(odd)


def test_a_value_reads_back_and_unknown_fields_are_ignored() -> None:
    """encode/decode round-trip; fields a newer writer added (at the top or in the
    notification) are ignored."""
    original = entry(state="dead", attempts=3)
    raw = encode(original, 7.5, "writer-1")
    stored = decode(raw)
    assert (stored.entry, stored.created_at, stored.writer) == (original, 7.5, "writer-1")
    doc = json.loads(raw)
    assert doc["v"] == 1
    doc["shiny"] = {"new": True}
    doc["notification"]["severity"] = "high"
    assert decode(json.dumps(doc).encode()).entry == original


@pytest.mark.parametrize(("raw", "says"), [
    (b"\xff", "not JSON"), (b"[]", "not a JSON object"),
    (b'{"v": 2}', "version 2"), (b'{"v": 1, "state": "pending"}', "no notification"),
    (b'{"v": 1, "notification": {"id": "x"}, "state": "pending"}', "bad notification"),
])
def test_an_unreadable_value_is_a_store_error(raw: bytes, says: str) -> None:
    """What this version cannot read raises StoreError saying why."""
    with pytest.raises(StoreError, match=says):
        decode(raw)


def test_a_bad_state_or_number_is_a_store_error() -> None:
    """An unknown state or a field of the wrong type is refused, not taken in."""
    doc = json.loads(encode(entry(), 1.0, "w"))
    for field, value in (("state", "lost"), ("attempts", "3"), ("next_attempt", None)):
        bad = dict(doc, **{field: value})
        with pytest.raises(StoreError):
            decode(json.dumps(bad).encode())


@pytest.mark.parametrize(("ours", "theirs", "winner"), [
    ("pending", None, "theirs"),
    ("pending", "delivered", "theirs"),
    ("dead", "delivered", "theirs"),
    ("delivered", "delivered", "theirs"),
    ("delivered", "pending", "ours"),
    ("delivered", "dead", "ours"),
    ("pending", "dead", "theirs"),
    ("pending", "pending", "ours"),
    ("dead", "dead", "theirs"),
])
def test_which_write_stands(ours: State, theirs: State | None, winner: str) -> None:
    """A delivery wins; another node's dead letter wins over our retry; a deleted entry
    stays deleted; of two retries, ours (the delivering node's)."""
    assert resolve(entry(ours), entry(theirs) if theirs else None) == winner


def test_our_dead_letter_yields_only_to_a_later_requeue() -> None:
    """Our dead beats their late retry step, but not an operator's retry (attempts 0)
    written after it."""
    ours = entry("dead", attempts=4, updated_at=20.0)
    assert resolve(ours, entry("pending", attempts=2, updated_at=15.0)) == "ours"
    assert resolve(ours, entry("pending", attempts=0, updated_at=15.0)) == "ours"
    assert resolve(ours, entry("pending", attempts=0, updated_at=25.0)) == "theirs"


def test_two_retries_keep_the_larger_attempt_count() -> None:
    """Writing our retry over theirs keeps max(attempts), so retries stay bounded."""
    assert merged(entry("pending", 1), entry("pending", 5)).attempts == 5
    assert merged(entry("pending", 6), entry("pending", 5)).attempts == 6
