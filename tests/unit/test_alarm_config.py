"""`[app:NAME]` sections: uWSGI's alarm option names and aliases, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config.load import load_config
from collector.errors import ConfigError, Location
from tests.unit.alarm_support import rules_from

HEAD = "alarm = page cmd:/bin/true\nalarm = hook webhook:http://127.0.0.1:1/x\n"


@pytest.mark.parametrize("key", ["alarm-backlog", "backlog-alarm", "lq-alarm", "alarm-lq",
                                 "alarm-listen-queue", "listen-queue-alarm"])
def test_every_backlog_alias(key: str) -> None:
    """All of uWSGI's names for the listen-queue alarm are accepted."""
    assert rules_from(HEAD + f"{key} = page,hook\n").backlog == ("page", "hook")


@pytest.mark.parametrize(("key", "negate"), [("log-alarm", False), ("alarm-log", False),
                                             ("not-log-alarm", True), ("not-alarm-log", True)])
def test_log_alarm_aliases(key: str, negate: bool) -> None:
    """log-alarm and not-log-alarm in both spellings, regex kept whole (spaces included)."""
    rules = rules_from(HEAD + f"{key} = page,hook HTTP/1\\.[01] 5\\d\\d after\n")
    (rule,) = rules.log_rules
    assert (rule.alarms, rule.regex, rule.negate) == (("page", "hook"),
                                                      "HTTP/1\\.[01] 5\\d\\d after", negate)


def test_segfault_harakiri_silence_rate_and_settings() -> None:
    """The other conditions and the settings, with their defaults when absent."""
    rules = rules_from(HEAD + "segfault-alarm = page\nalarm-segfault = hook\n"
                       "alarm-harakiri = page\nalarm-silence = page 5m web\\.\\d+\n"
                       "alarm-rate = hook 50/60 HTTP/1\\.[01] 5\\d\\d\n"
                       "alarm-freq = 10\nalarm-msg-size = 1024\nalarm-retries = 3\n")
    assert rules.segfault == ("page", "hook")
    assert rules.harakiri == ("page",)
    assert (rules.silence[0].alarm, rules.silence[0].seconds,
            rules.silence[0].source_regex) == ("page", 300.0, "web\\.\\d+")
    assert (rules.rate[0].count, rules.rate[0].seconds) == (50, 60.0)
    assert (rules.freq, rules.msg_size, rules.retry.attempts) == (10.0, 1024, 3)
    assert rules_from(HEAD).freq == 3.0
    assert rules_from(HEAD).msg_size == 8192


@pytest.mark.parametrize(("body", "line", "key", "words"), [
    ("alarm = page\n", 2, "alarm", "NAME PLUGIN:ARGS"),
    ("alarm = x signal:17\n", 2, "alarm", "inside"),
    ("alarm = x mule:1\n", 2, "alarm", "mule"),
    ("alarm = x carrier:pigeon\n", 2, "alarm", "unknown alarm plugin"),
    ("alarm = x mail:smtp://h\n", 2, "alarm", "mail_to"),
    ("alarm = x mail:smtp://h;mail_to=a@b;colour=red\n", 2, "alarm", "colour"),
    ("alarm = x webhook:ftp://h/\n", 2, "alarm", "http"),
    ("alarm = x webhook:http://h/;secret=plain\n", 2, "alarm", "whsec_"),
    ("alarm = x curl:http://h/;timeout=soon\n", 2, "alarm", "timeout"),
    ("alarm = x cmd:\n", 2, "alarm", "command"),
    ("alarm = x cmd:true\nalarm = x cmd:false\n", 3, "alarm", "twice"),
    ("log-alarm = nobody boom\n", 2, "log-alarm", "unknown alarm"),
    (HEAD + "log-alarm = page (unclosed\n", 4, "log-alarm", "regular expression"),
    (HEAD + "log-alarm = page\n", 4, "log-alarm", "REGEX"),
    (HEAD + "alarm-backlog = page,nobody\n", 4, "alarm-backlog", "nobody"),
    (HEAD + "alarm-fd = page 3 boom\n", 4, "alarm-fd", "file descriptor"),
    (HEAD + "alarm-silence = page\n", 4, "alarm-silence", "SECONDS"),
    (HEAD + "alarm-rate = page 5 x\n", 4, "alarm-rate", "COUNT/SECONDS"),
    (HEAD + "alarm-freq = often\n", 4, "alarm-freq", "duration"),
    (HEAD + "alarm-freq = 1\nalarm-freq = 2\n", 5, "alarm-freq", "once"),
    (HEAD + "alarm-colour = red\n", 4, "alarm-colour", "unknown key"),
    (HEAD + "alarm-resolve = maybe\n", 4, "alarm-resolve", "yes or no"),
    (HEAD + "alarm-group-wait = soon\n", 4, "alarm-group-wait", "duration"),
    (HEAD + "alarm-repeat = 1h\nalarm-repeat = 2h\n", 5, "alarm-repeat", "once"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, body: str, line: int, key: str,
                                       words: str) -> None:
    """A bad alarm line stops the config load at its file, line and key, saying why."""
    path = tmp_path / "collector.ini"
    path.write_text(f"[app:shop]\n{body}")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.location == Location(str(path), line, key)
    assert words in caught.value.message


def test_grouping_repeat_and_resolve_settings_and_their_defaults() -> None:
    """Without them, today's behaviour (no grouping, no repeat) and resolve on after 30 s;
    alarm-group-wait alone brings Alertmanager's 5 m group-interval; each can be set."""
    plain = rules_from(HEAD)
    assert (plain.group_wait, plain.group_interval, plain.repeat) == (0.0, 0.0, 0.0)
    assert (plain.resolve, plain.resolve_after) == (True, 30.0)
    waiting = rules_from(HEAD + "alarm-group-wait = 10s\n")
    assert (waiting.group_wait, waiting.group_interval) == (10.0, 300.0)
    rules = rules_from(HEAD + "alarm-group-wait = 10s\nalarm-group-interval = 1m\n"
                       "alarm-repeat = 4h\nalarm-resolve = off\nalarm-resolve-after = 5s\n")
    assert (rules.group_wait, rules.group_interval, rules.repeat) == (10.0, 60.0, 14400.0)
    assert (rules.resolve, rules.resolve_after) == (False, 5.0)


def test_alarm_must_be_defined_before_use_as_in_uwsgi() -> None:
    """uWSGI maps log-alarm names to instances already defined; so does the collector."""
    with pytest.raises(ConfigError, match="define it first"):
        rules_from("log-alarm = page boom\nalarm = page cmd:true\n")


def test_alarm_curl_options_split_on_semicolons() -> None:
    """alarm_curl's `URL;opt=value` syntax, with a `;` inside the value list kept apart."""
    rules = rules_from("alarm = m mail:smtp://127.0.0.1:25;mail_to=a@x.org,b@y.org;"
                       "mail_from=c@z.org;subject=[shop] alarm\n")
    assert rules.alarms["m"].arg == ("smtp://127.0.0.1:25;mail_to=a@x.org,b@y.org;"
                                     "mail_from=c@z.org;subject=[shop] alarm")
