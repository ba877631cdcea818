"""Parse an `[app:NAME]` section into AppRules, with uWSGI's option names and aliases.

Every error is a ConfigError at the entry's file, line and key.
"""

from __future__ import annotations

from alarms.conditions.heroku import CODE as HEROKU_CODE
from alarms.notifiers.registry import check_plugin
from alarms.spec import (
    AlarmSpec,
    AppRules,
    HerokuRule,
    LogRule,
    RateRule,
    RetryPolicy,
    SilenceRule,
)
from collector.config.ini import Entry
from collector.config.model import AppSection
from collector.config.units import parse_bool, parse_duration, parse_int
from collector.errors import ConfigError
from collector.regex import regex_error

LOG_ALARM = frozenset({"log-alarm", "alarm-log"})
NOT_LOG_ALARM = frozenset({"not-log-alarm", "not-alarm-log"})
BACKLOG = frozenset({"alarm-backlog", "backlog-alarm", "lq-alarm", "alarm-lq",
                     "alarm-listen-queue", "listen-queue-alarm"})
SEGFAULT = frozenset({"alarm-segfault", "segfault-alarm"})
HARAKIRI = frozenset({"alarm-harakiri", "harakiri-alarm"})
HEROKU = frozenset({"alarm-heroku", "heroku-alarm"})
SETTINGS = frozenset({"alarm-freq", "alarm-msg-size", "alarm-retries", "alarm-backoff",
                      "alarm-max-backoff", "alarm-timeout", "alarm-concurrency",
                      "alarm-group-wait", "alarm-group-interval", "alarm-repeat",
                      "alarm-resolve", "alarm-resolve-after"})
# Alertmanager's group_interval, taken when alarm-group-wait is set and this is not.
DEFAULT_GROUP_INTERVAL = 300.0
KNOWN = (LOG_ALARM | NOT_LOG_ALARM | BACKLOG | SEGFAULT | HARAKIRI | HEROKU | SETTINGS
         | {"alarm", "alarm-silence", "alarm-rate"})
# uWSGI options that only make sense inside uWSGI; named so the error can say why.
INSIDE_UWSGI_KEYS = {"alarm-fd": "watches a file descriptor of the uWSGI process",
                     "alarm-cheap": "tunes uWSGI's alarm threads",
                     "alarm-metric": "reads uWSGI's metrics subsystem",
                     "metric-alarm": "reads uWSGI's metrics subsystem"}


def _alarm(entry: Entry) -> AlarmSpec:
    name, sep, rest = entry.value.partition(" ")
    plugin, colon, arg = rest.strip().partition(":")
    if not sep or not colon or not name or not plugin:
        raise ConfigError("invalid alarm syntax: expected 'NAME PLUGIN:ARGS', e.g. "
                          "'alarm = page cmd:/usr/local/bin/page-oncall'", entry.location)
    problem = check_plugin(plugin, arg)
    if problem:
        raise ConfigError(problem, entry.location)
    return AlarmSpec(name, plugin, arg, entry.location)


def _names(text: str, entry: Entry, alarms: dict[str, AlarmSpec]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError("expected an alarm name", entry.location)
    for name in names:
        if name not in alarms:
            known = ", ".join(sorted(alarms)) or "none defined yet"
            raise ConfigError(f"unknown alarm {name!r} (alarms defined above: {known}); "
                              "define it first with 'alarm = NAME PLUGIN:ARGS'",
                              entry.location)
    return names


def _one_name(text: str, entry: Entry, alarms: dict[str, AlarmSpec]) -> str:
    """One alarm name: these rules keep per-alarm state (a window, a quiet period)."""
    names = _names(text, entry, alarms)
    if len(names) > 1:
        raise ConfigError(f"expected one alarm name, got {len(names)} ({text}); give one "
                          f"{entry.key} line per alarm", entry.location)
    return names[0]


def _regex(pattern: str, entry: Entry) -> str:
    problem = regex_error(pattern)
    if problem:
        raise ConfigError(f"bad regular expression {pattern!r}: {problem}", entry.location)
    return pattern


def _log_rule(entry: Entry, alarms: dict[str, AlarmSpec]) -> LogRule:
    names, sep, pattern = entry.value.partition(" ")
    if not sep or not pattern.strip():
        raise ConfigError(f"invalid {entry.key} syntax: expected 'ALARM[,ALARM...] REGEX'",
                          entry.location)
    return LogRule(_names(names, entry, alarms), _regex(pattern.strip(), entry),
                   entry.key in NOT_LOG_ALARM, entry.location)


def _silence(entry: Entry, alarms: dict[str, AlarmSpec]) -> SilenceRule:
    parts = entry.value.split(None, 2)
    if len(parts) < 2:
        raise ConfigError("expected 'ALARM SECONDS [SOURCE-REGEX]'", entry.location)
    alarm = _one_name(parts[0], entry, alarms)
    seconds = parse_duration(parts[1], entry.location)
    if seconds <= 0:
        raise ConfigError("the silence must last more than 0 seconds", entry.location)
    source = _regex(parts[2], entry) if len(parts) == 3 else None
    return SilenceRule(alarm, seconds, source, entry.location)


def _rate(entry: Entry, alarms: dict[str, AlarmSpec]) -> RateRule:
    parts = entry.value.split(None, 2)
    count_text, slash, seconds_text = parts[1].partition("/") if len(parts) == 3 else ("",
                                                                                     "", "")
    if len(parts) < 3 or not slash:
        raise ConfigError("expected 'ALARM COUNT/SECONDS REGEX', e.g. "
                          "'alarm-rate = page 50/60 HTTP/1\\.[01] 5\\d\\d'", entry.location)
    alarm = _one_name(parts[0], entry, alarms)
    count = parse_int(count_text, entry.location, minimum=1)
    seconds = parse_duration(seconds_text, entry.location)
    if seconds <= 0:
        raise ConfigError("the window must be more than 0 seconds", entry.location)
    return RateRule(alarm, count, seconds, _regex(parts[2].strip(), entry), entry.location)


def _heroku(entry: Entry, alarms: dict[str, AlarmSpec]) -> HerokuRule:
    parts = entry.value.split(None, 1)
    if len(parts) < 2:
        raise ConfigError("expected 'ALARM[,ALARM...] CODE[,CODE...]', e.g. "
                          "'alarm-heroku = page H10,H12,R14,crashed'", entry.location)
    names = _names(parts[0], entry, alarms)
    codes: list[str] = []
    for text in parts[1].replace(" ", "").split(","):
        code = "crashed" if text.lower() == "crashed" else text.upper()
        if not HEROKU_CODE.fullmatch(code):
            raise ConfigError(f"unknown Heroku code {text!r}: expected H, R or L and two "
                              "digits (H12, R14, L10) or 'crashed'", entry.location)
        codes.append(code)
    return HerokuRule(names, tuple(dict.fromkeys(codes)), entry.location)


def parse_app(section: AppSection) -> AppRules:
    """The section's rules; alarms must be defined before the rules that name them."""
    alarms: dict[str, AlarmSpec] = {}
    log_rules: list[LogRule] = []
    lists: dict[str, list[str]] = {"backlog": [], "segfault": [], "harakiri": []}
    silence: list[SilenceRule] = []
    rate: list[RateRule] = []
    heroku: list[HerokuRule] = []
    settings: dict[str, Entry] = {}
    for entry in section.entries:
        key = entry.key
        if key in INSIDE_UWSGI_KEYS:
            raise ConfigError(f"{key} {INSIDE_UWSGI_KEYS[key]}; it cannot run on the "
                              "collector", entry.location)
        if key not in KNOWN:
            raise ConfigError(f"unknown key in [{section.name}]; known keys: "
                              f"{', '.join(sorted(KNOWN))}", entry.location)
        if key == "alarm":
            spec = _alarm(entry)
            if spec.name in alarms:
                raise ConfigError(f"alarm {spec.name!r} is defined twice", entry.location)
            alarms[spec.name] = spec
        elif key in LOG_ALARM or key in NOT_LOG_ALARM:
            log_rules.append(_log_rule(entry, alarms))
        elif key in BACKLOG:
            lists["backlog"].extend(_names(entry.value, entry, alarms))
        elif key in SEGFAULT:
            lists["segfault"].extend(_names(entry.value, entry, alarms))
        elif key in HARAKIRI:
            lists["harakiri"].extend(_names(entry.value, entry, alarms))
        elif key == "alarm-silence":
            silence.append(_silence(entry, alarms))
        elif key == "alarm-rate":
            rate.append(_rate(entry, alarms))
        elif key in HEROKU:
            heroku.append(_heroku(entry, alarms))
        else:
            if key in settings:
                raise ConfigError("given twice; give it once", entry.location)
            settings[key] = entry
    group_wait = _setting(settings, "alarm-group-wait", 0.0, duration=True)
    resolve = settings.get("alarm-resolve")
    return AppRules(
        app=section.name, alarms=alarms, log_rules=tuple(log_rules),
        backlog=tuple(lists["backlog"]), segfault=tuple(lists["segfault"]),
        harakiri=tuple(lists["harakiri"]), silence=tuple(silence), rate=tuple(rate),
        heroku=tuple(heroku),
        freq=_setting(settings, "alarm-freq", 3.0, duration=True),
        msg_size=int(_setting(settings, "alarm-msg-size", 8192, minimum=64)),
        retry=RetryPolicy(
            attempts=int(_setting(settings, "alarm-retries", 10, minimum=1)),
            backoff=_setting(settings, "alarm-backoff", 1.0, duration=True),
            max_backoff=_setting(settings, "alarm-max-backoff", 300.0, duration=True),
            timeout=_setting(settings, "alarm-timeout", 30.0, duration=True),
            concurrency=int(_setting(settings, "alarm-concurrency", 4, minimum=1))),
        group_wait=group_wait,
        group_interval=_setting(settings, "alarm-group-interval",
                                DEFAULT_GROUP_INTERVAL if group_wait else 0.0, duration=True),
        repeat=_setting(settings, "alarm-repeat", 0.0, duration=True),
        resolve=parse_bool(resolve.value, resolve.location) if resolve is not None else True,
        resolve_after=_setting(settings, "alarm-resolve-after", 30.0, duration=True))


def _setting(settings: dict[str, Entry], key: str, default: float, *, duration: bool = False,
             minimum: int = 0) -> float:
    entry = settings.get(key)
    if entry is None:
        return default
    if duration:
        return parse_duration(entry.value, entry.location)
    return parse_int(entry.value, entry.location, minimum=minimum)
