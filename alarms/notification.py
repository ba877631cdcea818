"""What a fired alarm becomes: a notification for one alarm instance, kept in the outbox."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
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
            **({"members": self.members} if self.members else {}),
        }

    def member(self) -> dict[str, Any]:
        """This notification as a member of a grouped one (`members`)."""
        return {"id": self.id, "source": self.source, "message": self.message,
                "count": self.count, "suppressed": self.suppressed,
                "first_seen": self.first_seen, "last_seen": self.last_seen,
                "created_at": self.created_at, "status": self.status, "alert": self.alert,
                "facts": self.facts}

    def parts(self) -> list[Notification]:
        """The notifications a grouped one carries (for receivers that take one alert per
        member), or this one alone."""
        if not self.members:
            return [self]
        return [replace(self, members=[], context=[], id=m["id"], source=m["source"],
                        message=m["message"], count=m["count"],
                        suppressed=m.get("suppressed", 0), first_seen=m["first_seen"],
                        last_seen=m["last_seen"], created_at=m.get("created_at", 0.0),
                        status=m["status"], alert=m["alert"], facts=m.get("facts", {}))
                for m in self.members]

    def text(self) -> str:
        """The message as a command or plain-text receiver gets it: like uWSGI, the message
        itself, with a note of held-back repeats when there were any."""
        note = (f"\n[{self.suppressed} earlier messages to this alarm were suppressed by "
                "alarm-freq]" if self.suppressed else "")
        return self.message + note


def grouped(members: Sequence[Notification]) -> Notification:
    """One notification carrying `members` (all of one group, oldest first): the first
    member's alarm, app and condition; `count` and `suppressed` summed; `firing` while
    any member fires; the message a one-line summary, then each member's source, count
    and message. Its id is derived from the members' ids (the `stable_ids` form), so a
    retry of the same members has the same webhook-id. One member is sent as itself,
    listed in `members`."""
    first = members[0]
    listed = [m.member() for m in members]
    if len(members) == 1:
        return replace(first, members=listed)
    sources = sorted({m.source for m in members})
    ids = hashlib.sha256("\0".join(sorted(m.id for m in members)).encode()).hexdigest()
    created = min((m.created_at for m in members if m.created_at), default=0.0)
    firing = any(m.status == FIRING for m in members)
    summary = (f"{len(members)} alarms of {first.condition} in {first.app} from "
               f"{len(sources)} source{'s' if len(sources) != 1 else ''}")
    lines = [summary, *(f"- {m.source} (x{m.count}): {m.message}" for m in members)]
    return Notification(
        id=f"msg_{max(0, int(created * 1000)):012x}{ids[:20]}",
        alarm=first.alarm, plugin=first.plugin, app=first.app,
        source=sources[0] if len(sources) == 1 else "", condition=first.condition,
        message="\n".join(lines), facts={"members": len(members), "sources": sources},
        first_seen=min(m.first_seen for m in members),
        last_seen=max(m.last_seen for m in members),
        count=sum(m.count for m in members), suppressed=sum(m.suppressed for m in members),
        created_at=created, status=FIRING if firing else RESOLVED, group=first.group,
        alert="", members=listed)
