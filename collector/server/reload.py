"""What a reload changes: the pure difference between the running Config and a new one.

Nothing here does I/O; the server applies the plan (see `Server.reload`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from collector.config.model import Config, ListenerConfig
from collector.errors import Location

# Settings read once at start-up, by the ini key an operator would change: a reload logs
# that they need a restart and keeps the running values.
_RESTART_ONLY: tuple[tuple[str, str, str], ...] = (
    ("store", "data_dir", "data-dir"),
    ("store", "retention", "retention"),
    ("store", "retention_size", "retention-size"),
    ("store", "partition", "partition"),
    ("store", "max_queue", "max-queue"),
    ("store", "batch_max", "batch-max"),
    ("http", "host", "http"),
    ("http", "port", "http"),
    ("http", "token", "api-token"),
    ("cluster", "", "[cluster]"),
)


def settings(value: Any) -> Any:
    """`value` with every config Location left out, for comparing two loads.

    Moving a section within the file, or adding one above it, changes no setting; it must
    not reopen a socket or reset an alarm's state.
    """
    if isinstance(value, Location):
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,
                tuple((f.name, settings(getattr(value, f.name)))
                      for f in dataclasses.fields(value)))
    if isinstance(value, tuple | list):
        return tuple(settings(item) for item in value)
    if isinstance(value, dict):
        return tuple((key, settings(item)) for key, item in value.items())
    return value


def same_settings(a: Any, b: Any) -> bool:
    """True when `a` and `b` differ at most in where their lines are in the file."""
    return bool(settings(a) == settings(b))


@dataclass(frozen=True)
class ReloadPlan:
    """How to go from the running config to a reloaded one.

    Listeners: `open_first` bind addresses nobody holds, so they open before anything
    closes; `close` are the sockets that go (removed listeners, and listeners moved to
    another address); `open_after` bind an address one of those held. `retune` keep their
    socket and take the new settings (same name, address and number of receivers; a new
    `receivers` closes the sockets and opens new ones). `keep` are untouched.
    """

    config: Config
    open_first: tuple[ListenerConfig, ...] = ()
    close: tuple[str, ...] = ()
    open_after: tuple[ListenerConfig, ...] = ()
    retune: tuple[ListenerConfig, ...] = ()
    keep: tuple[str, ...] = ()
    alarms_changed: bool = False
    needs_restart: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether applying the plan changes anything."""
        return bool(self.open_first or self.close or self.open_after or self.retune
                    or self.alarms_changed)

    def summary(self) -> dict[str, Any]:
        """Key-value context for the `config_reloaded` log event."""
        opened = sorted(c.name for c in (*self.open_first, *self.open_after))
        return {"opened": opened, "closed": sorted(set(self.close) - set(opened)),
                "replaced": sorted({*self.close} & {*opened}
                                   | {c.name for c in self.retune}),
                "kept": sorted(self.keep), "alarms_changed": self.alarms_changed,
                "apps": len(self.config.apps)}


def _address(listener: ListenerConfig) -> tuple[str, str, int]:
    # TCP and TLS listeners share the TCP port space; UDP ports are another.
    return "udp" if listener.transport == "udp" else "tcp", listener.host, listener.port


def needs_restart(old: Config, new: Config) -> tuple[str, ...]:
    """The ini keys whose new value only a restart applies, in file order, once each."""
    keys: dict[str, None] = {}
    for part, attribute, key in _RESTART_ONLY:
        # An empty attribute names a whole section (read once at start-up).
        before = getattr(old, part) if not attribute else getattr(getattr(old, part), attribute)
        after = getattr(new, part) if not attribute else getattr(getattr(new, part), attribute)
        if not same_settings(before, after):
            keys[key] = None
    if (old.log_level, old.log_format) != (new.log_level, new.log_format):
        keys.update({k: None for k, a, b in (("log-level", old.log_level, new.log_level),
                                             ("log-format", old.log_format, new.log_format))
                     if a != b})
    return tuple(keys)


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """The plan to apply `new` over the running `old` (see ReloadPlan)."""
    running = {listener.name: listener for listener in old.listeners}
    wanted = {listener.name: listener for listener in new.listeners}
    keep: list[str] = []
    retune: list[ListenerConfig] = []
    fresh: list[ListenerConfig] = []
    close = [name for name in running if name not in wanted]
    for name, listener in wanted.items():
        before = running.get(name)
        if before is None:
            fresh.append(listener)
        elif same_settings(before, listener):
            keep.append(name)
        elif (_address(before) == _address(listener) and before.receivers == listener.receivers
              and listener.transport == "udp"):
            # A stream listener is closed and reopened instead (its connections with it).
            retune.append(listener)
        else:
            close.append(name)
            fresh.append(listener)
    leaving = {_address(running[name]) for name in close}
    restart = needs_restart(old, new)
    applied = replace(new, store=old.store, http=old.http, cluster=old.cluster,
                      log_level=old.log_level,
                      log_format=old.log_format, notices=old.notices)
    return ReloadPlan(
        config=applied,
        open_first=tuple(c for c in fresh if _address(c) not in leaving),
        close=tuple(close),
        open_after=tuple(c for c in fresh if _address(c) in leaving),
        retune=tuple(retune), keep=tuple(keep),
        alarms_changed=not same_settings(old.apps, new.apps),
        needs_restart=restart)
