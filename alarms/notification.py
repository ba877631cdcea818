"""What a fired alarm becomes: a notification for one alarm instance, kept in the outbox."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any


def new_id() -> str:
    """A notification id: time-ordered and unique (`msg_` + 48-bit ms + 80 random bits)."""
    return f"msg_{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


FIRING = "firing"
RESOLVED = "resolved"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def group_key(app: str, alarm: str, condition: str) -> str:
    """The stable `group` key: one per app, alarm and condition, the unit that grouping
    (alarm-group-wait) batches and that firing and resolved notifications share."""
    return "grp_" + _digest(app, alarm, condition)


def alert_key(app: str, alarm: str, condition: str, source: str, instance: str) -> str:
    """The stable `alert` key of a condition's instance (Event.alert), or "" for a
    condition that has no state."""
    return "alt_" + _digest(app, alarm, condition, source, instance) if instance else ""


@dataclass
class Notification:
    """One alarm instance to be told about one event.

    `count` is how many times the condition matched in this event (a rate's matches, a
    listen queue's repeats); `suppressed` how many earlier messages alarm-freq held back for
    this alarm since its last notification.

    `status` is `firing` or `resolved`; `group` and `alert` are the stable keys of
    `group_key` and `alert_key`. `members` is empty for a notification about one event;
    a grouped notification (alarm-group-wait) lists there every notification it carries,
    each in `member()` form.
    """

    id: str
    alarm: str
    plugin: str
    app: str
    source: str
    condition: str
    message: str
    facts: dict[str, Any] = field(default_factory=dict)
    first_seen: float = 0.0
    last_seen: float = 0.0
    count: int = 1
    suppressed: int = 0
    context: list[str] = field(default_factory=list)
    created_at: float = 0.0
    status: str = FIRING
    group: str = ""
    alert: str = ""
    members: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        """The outbox's stored form."""
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Notification:
        """Inverse of `to_json`."""
        return cls(**json.loads(text))

    def payload(self) -> dict[str, Any]:
        """The webhook document (README: "Webhook payload")."""
        return {
            "id": self.id, "type": "uwsgi.alarm", "alarm": self.alarm, "app": self.app,
            "source": self.source, "condition": self.condition, "message": self.message,
            "facts": self.facts, "first_seen": self.first_seen, "last_seen": self.last_seen,
            "count": self.count, "suppressed": self.suppressed,
            "status": self.status, "group": self.group, "alert": self.alert,
        }

    def text(self) -> str:
        """The message as a command or plain-text receiver gets it: like uWSGI, the message
        itself, with a note of held-back repeats when there were any."""
        note = (f"\n[{self.suppressed} earlier messages to this alarm were suppressed by "
                "alarm-freq]" if self.suppressed else "")
        return self.message + note
