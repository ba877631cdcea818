"""Collector configuration: a uWSGI-style ini read into one typed `Config`.

The loader lives in `collector.config.load` and is imported from there: it parses the
`[app:NAME]` alarm lines with `alarms.config`, which itself reads this package's ini and
unit parsers, so re-exporting the loader here would make an import cycle.
"""

from collector.config.ini import Entry
from collector.config.model import (
    AppSection,
    Config,
    HttpConfig,
    ListenerConfig,
    StoreConfig,
)

__all__ = [
    "AppSection",
    "Config",
    "Entry",
    "HttpConfig",
    "ListenerConfig",
    "StoreConfig",
]
