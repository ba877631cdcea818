"""Reading a store's partition files directly (tests that check what reached the disk)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from collector.record import Row
from collector.store.blocks import read_rows
from collector.store.partitions import list_partitions


def stored_rows(logs_dir: Path, *, check: bool = False) -> list[Row]:
    """Every committed row in the partition files under `logs_dir` (a data dir's `logs`),
    in id order, duplicates included; with `check`, each file must also pass SQLite's
    integrity check."""
    found: list[Row] = []
    for partition in list_partitions(logs_dir):
        if not partition.path.is_file():
            continue
        uri = f"file:{partition.path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as conn:
            if check:
                assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            found.extend(read_rows(conn))
    return found
