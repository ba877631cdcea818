"""Collector configuration: a uWSGI-style ini read into one typed `Config`."""

from collector.config.ini import Entry
from collector.config.load import load_config, load_default_config
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
    "load_config",
    "load_default_config",
]
