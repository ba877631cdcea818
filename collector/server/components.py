"""The one place that lists the server's parts beyond its core, built from the Config.

The server starts these after the store and ingest and before the listeners (so no record
goes by unseen), and stops them in reverse order after the listeners have closed.
"""

from __future__ import annotations

from alarms.component import AlarmsComponent
from collector.config.model import Config
from collector.server.context import Component


def build_components(config: Config) -> list[Component]:
    """The parts to start, in order: today only the alarms (engine, outbox, delivery)."""
    return [AlarmsComponent(config)]
