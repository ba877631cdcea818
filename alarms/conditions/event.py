"""An alarm-worthy event, as a condition reports it (before anti-storm and notifiers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    """Something that should alarm the named alarm instances.

    `storm_key` is what alarm-freq compares (uWSGI compares the whole message); `sliding`
    makes every repeat extend the quiet window, so that a condition that repeats by itself
    (a listen queue logged full every second) pages once per episode.

    `status` is `firing`, or `resolved` when a condition that has a state clears. `alert`
    names the condition's instance for a condition that has a state (a listen queue's
    socket, a silent source, a rate's regex), so a `resolved` event pairs with the
    `firing` ones it ends; it is empty for a condition that is one line (a log-alarm).
    """

    alarms: tuple[str, ...]
    condition: str
    source: str
    message: str
    at: float
    facts: dict[str, Any] = field(default_factory=dict)
    first_seen: float = 0.0
    count: int = 1
    storm_key: str = ""
    sliding: bool = False
    # The source's lines just before the event, for a mail's context.
    context: list[str] = field(default_factory=list)
    status: str = "firing"
    alert: str = ""

    def __post_init__(self) -> None:
        if not self.first_seen:
            self.first_seen = self.at
        if not self.storm_key:
            self.storm_key = self.message
