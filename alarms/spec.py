"""The typed form of an `[app:NAME]` section's alarm lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.errors import Location


@dataclass(frozen=True)
class AlarmSpec:
    """`alarm = NAME PLUGIN:ARGS`: a named notifier instance."""

    name: str
    plugin: str
    arg: str
    location: Location


@dataclass(frozen=True)
class LogRule:
    """`log-alarm` (or `not-log-alarm` when `negate`): alarms and a regex, in file order."""

    alarms: tuple[str, ...]
    regex: str
    negate: bool
    location: Location


@dataclass(frozen=True)
class SilenceRule:
    """`alarm-silence = NAME SECONDS [SOURCE-REGEX]`."""

    alarm: str
    seconds: float
    source_regex: str | None
    location: Location


@dataclass(frozen=True)
class RateRule:
    """`alarm-rate = NAME COUNT/SECONDS REGEX`."""

    alarm: str
    count: int
    seconds: float
    regex: str
    location: Location


@dataclass(frozen=True)
class HerokuRule:
    """`alarm-heroku = NAME[,NAME...] CODE[,CODE...]`: Heroku error codes (H12, R14,
    `crashed`)."""

    alarms: tuple[str, ...]
    codes: tuple[str, ...]
    location: Location


@dataclass(frozen=True)
class RetryPolicy:
    """How the outbox retries a failed delivery."""

    attempts: int = 10
    backoff: float = 1.0
    max_backoff: float = 300.0
    timeout: float = 30.0
    concurrency: int = 4


@dataclass(frozen=True)
class AppRules:
    """Everything that can raise an alarm for one app."""

    app: str
    alarms: dict[str, AlarmSpec] = field(default_factory=dict)
    log_rules: tuple[LogRule, ...] = ()
    backlog: tuple[str, ...] = ()
    segfault: tuple[str, ...] = ()
    harakiri: tuple[str, ...] = ()
    silence: tuple[SilenceRule, ...] = ()
    rate: tuple[RateRule, ...] = ()
    heroku: tuple[HerokuRule, ...] = ()
    freq: float = 3.0
    msg_size: int = 8192
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Grouping and repeat, with Alertmanager's meaning; 0 turns each off (uWSGI's way).
    group_wait: float = 0.0
    group_interval: float = 0.0
    repeat: float = 0.0
    # `resolved` notifications for conditions that have a state (alarm-resolve).
    resolve: bool = True
    resolve_after: float = 30.0

    @property
    def has_conditions(self) -> bool:
        """Whether any line or silence can raise an alarm."""
        return bool(self.log_rules or self.backlog or self.segfault or self.harakiri
                    or self.silence or self.rate or self.heroku)
