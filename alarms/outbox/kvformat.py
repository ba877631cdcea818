"""How an outbox entry is stored in a NATS KV bucket: its key and its value (pure).

The key is the notification id when that is a valid KV key (ids are `msg_` + hex);
anything else maps, deterministically, to `h.` + a SHA-256 of the id, which no id passed
through unchanged can equal (those never contain a dot). The value is one JSON object,
versioned (`"v": 1`): the notification, the delivery state, the creation time the outbox
sorts by, and the writer (the outbox instance that wrote it, so a watcher can tell its own
writes from another node's). Unknown fields, at the top or in the notification, are
ignored, so a newer node can add some without breaking an older one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from alarms.notification import Notification
from alarms.outbox.base import STATES, Entry
from collector.errors import StoreError

VERSION = 1
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,200}")
_NOTIFICATION_FIELDS = frozenset(f.name for f in dataclasses.fields(Notification))


@dataclass(frozen=True)
class Stored:
    """One decoded value: the entry, when it was created, who wrote it last."""

    entry: Entry
    created_at: float
    writer: str


def key_for(notification_id: str) -> str:
    """The KV key of a notification id: the id itself when it is a plain key, else a
    digest of it (the same on every node)."""
    if _PLAIN_KEY.fullmatch(notification_id):
        return notification_id
    return "h." + hashlib.sha256(notification_id.encode()).hexdigest()


def encode(entry: Entry, created_at: float, writer: str) -> bytes:
    """The stored value of `entry`."""
    return json.dumps({
        "v": VERSION, "notification": dataclasses.asdict(entry.notification),
        "state": entry.state, "attempts": entry.attempts, "next_attempt": entry.next_attempt,
        "last_error": entry.last_error, "outcome": entry.outcome,
        "delivered_at": entry.delivered_at, "updated_at": entry.updated_at,
        "created_at": created_at, "writer": writer,
    }, ensure_ascii=False, separators=(",", ":")).encode()


def _number(value: Any, name: str, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StoreError(f"{name} is not a number: {value!r}")
    return value


def decode(raw: bytes) -> Stored:
    """The entry stored in `raw`; StoreError when this version cannot read it (not JSON,
    another version, a field of the wrong type)."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise StoreError("not a JSON object")
    if doc.get("v") != VERSION:
        raise StoreError(f"version {doc.get('v')!r}, this collector reads {VERSION}")
    fields = doc.get("notification")
    if not isinstance(fields, dict):
        raise StoreError("no notification")
    try:
        notification = Notification(**{k: v for k, v in fields.items()
                                        if k in _NOTIFICATION_FIELDS})
    except TypeError as exc:
        raise StoreError(f"bad notification: {exc}") from None
    if not isinstance(notification.id, str):
        raise StoreError("the notification has no id")
    state = doc.get("state")
    if state not in STATES:
        raise StoreError(f"unknown state {state!r}")
    attempts = _number(doc.get("attempts", 0), "attempts")
    entry = Entry(
        notification=notification, state=state, attempts=int(attempts),
        next_attempt=float(_number(doc.get("next_attempt", 0.0), "next_attempt")),
        last_error=doc.get("last_error"), outcome=doc.get("outcome"),
        delivered_at=_number(doc.get("delivered_at"), "delivered_at", optional=True),
        updated_at=float(_number(doc.get("updated_at", 0.0), "updated_at")))
    created_at = float(_number(doc.get("created_at", notification.created_at),
                               "created_at"))
    writer = doc.get("writer")
    return Stored(entry, created_at, writer if isinstance(writer, str) else "")
