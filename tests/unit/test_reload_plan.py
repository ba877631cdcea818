"""The reload plan: the pure difference between the running Config and a reloaded one."""

from __future__ import annotations

from pathlib import Path

from alarms.spec import AppRules
from collector.config.load import load_config
from collector.config.model import Config
from collector.server.reload import plan_reload, same_settings

HEAD = "[collector]\ndata-dir = /tmp/x\n"


def load(tmp_path: Path, text: str, name: str = "collector.ini") -> Config:
    """Load `text` as an ini file."""
    path = tmp_path / name
    path.write_text(text)
    return load_config(path, env={})


def listener(name: str, port: int, extra: str = "") -> str:
    """A socket listener section."""
    return f"[listener:{name}]\nudp = 127.0.0.1:{port}\nformat = socket\n{extra}\n"


def test_listeners_opened_closed_retuned_and_kept(tmp_path: Path) -> None:
    """Added listeners open, removed ones close, a changed one on its address is retuned on
    its socket, and one that only moved within the file is kept."""
    old = load(tmp_path, HEAD + listener("keep", 1) + listener("gone", 2)
               + listener("tune", 3, "app = a\n"), "old.ini")
    new = load(tmp_path, HEAD + listener("tune", 3, "app = b\n") + listener("fresh", 4)
               + "\n\n" + listener("keep", 1), "new.ini")
    plan = plan_reload(old, new)
    assert [c.name for c in plan.open_first] == ["fresh"]
    assert plan.close == ("gone",)
    assert plan.open_after == ()
    assert [c.name for c in plan.retune] == ["tune"]
    assert plan.keep == ("keep",)
    assert not plan.alarms_changed
    assert plan.needs_restart == ()
    assert plan.summary()["opened"] == ["fresh"]
    assert plan.summary()["closed"] == ["gone"]


def test_an_address_given_up_is_opened_after_it_closes(tmp_path: Path) -> None:
    """A listener moved to another port closes and opens again; a new listener on the port
    a removed one held opens only after that one closed."""
    old = load(tmp_path, HEAD + listener("moves", 1) + listener("gone", 2), "old.ini")
    new = load(tmp_path, HEAD + listener("moves", 5) + listener("takes", 2), "new.ini")
    plan = plan_reload(old, new)
    assert [c.name for c in plan.open_first] == ["moves"]
    assert set(plan.close) == {"moves", "gone"}
    assert [c.name for c in plan.open_after] == ["takes"]
    assert plan.summary()["replaced"] == ["moves"]


def test_restart_only_settings_are_named_and_kept(tmp_path: Path) -> None:
    """data-dir, http, api-token and the store settings need a restart: the plan names
    their keys and its config keeps the running values."""
    old = load(tmp_path, HEAD + listener("a", 1), "old.ini")
    new = load(tmp_path, "[collector]\ndata-dir = /tmp/y\nhttp = 127.0.0.1:9090\n"
               "retention = 1d\nlog-level = debug\n" + listener("a", 1), "new.ini")
    plan = plan_reload(old, new)
    assert plan.needs_restart == ("data-dir", "retention", "http", "log-level")
    assert plan.config.store == old.store
    assert plan.config.http == old.http
    assert plan.config.log_level == "info"
    assert not plan.changed


def test_alarm_rules_change_only_when_a_setting_does(tmp_path: Path) -> None:
    """Moving an [app:] section changes nothing; one more rule changes the alarms."""
    rules = "[app:shop]\nalarm = a log:\nlog-alarm = a ^x\n"
    old = load(tmp_path, HEAD + rules, "old.ini")
    moved = load(tmp_path, HEAD + "\n\n" + listener("a", 1) + rules, "moved.ini")
    more = load(tmp_path, HEAD + rules + "log-alarm = a ^y\n", "more.ini")
    assert not plan_reload(old, moved).alarms_changed
    assert plan_reload(old, more).alarms_changed
    assert isinstance(old.apps[0], AppRules)
    assert same_settings(old.apps, moved.apps)
    assert old.apps != moved.apps  # their locations differ
