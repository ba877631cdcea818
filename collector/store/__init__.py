"""Storage of records behind a small interface; SQLite partitions are the default backend."""

from collector.query import LogQuery
from collector.store.base import Store
from collector.store.sqlite import SqliteStore

__all__ = ["LogQuery", "SqliteStore", "Store"]
