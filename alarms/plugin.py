"""Registers the alarms package with the collector: `[app:NAME]` validation at config load,
the server component, and the `collector alarms` commands. Imported by `collector.cli`."""

from __future__ import annotations

from alarms.cli import add_commands
from alarms.config import parse_app
from collector.cli import register_commands
from collector.config.load import register_app_validator
from collector.config.model import Config
from collector.context import Component
from collector.server import register_component


def _component(config: Config) -> Component:
    from alarms.component import AlarmsComponent  # noqa: PLC0415 - only when serving

    return AlarmsComponent(config)


register_app_validator(parse_app)
register_component(_component)
register_commands(add_commands)
