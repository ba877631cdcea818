"""The partition files' schema and connection settings, shared by writer and readers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from collector.record import COLUMNS

# Each partition holds blocks: the rows of one stream (app, source) from one commit,
# compressed (collector/store/blocks.py). Partitions written before blocks hold a `logs`
# table of rows (LEGACY_SCHEMA), read by queries until retention deletes them.
SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    app TEXT NOT NULL,
    source TEXT NOT NULL,
    lines BLOB NOT NULL,
    columns BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_by_last ON blocks (last_id);
CREATE INDEX IF NOT EXISTS blocks_by_stream ON blocks (app, source, last_id);
"""
INSERT_BLOCK = ("INSERT INTO blocks (first_id, last_id, count, app, source, lines, columns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)")
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    emitted_at REAL,
    app TEXT NOT NULL,
    source TEXT NOT NULL,
    host TEXT NOT NULL,
    format TEXT NOT NULL,
    kind TEXT NOT NULL,
    line TEXT NOT NULL,
    method TEXT,
    path TEXT,
    status INTEGER,
    msecs REAL,
    size INTEGER,
    pid INTEGER,
    worker INTEGER
);
CREATE INDEX IF NOT EXISTS logs_by_app ON logs (app, source, id);
"""
# The legacy table's statements (tests make partitions as the previous version did).
# Built from the fixed column list, never from input. OR IGNORE makes a commit idempotent:
# rows committed by a writer that died before acknowledging them come back in the resent
# frames, as does the first partition's share of a batch whose second partition failed,
# and must neither fail on the primary key nor be stored twice. The id is the rowid, so
# the check is the lookup that a plain INSERT makes anyway.
INSERT = (f"INSERT OR IGNORE INTO logs ({', '.join(COLUMNS)}) "  # noqa: S608
          f"VALUES ({', '.join('?' * len(COLUMNS))})")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM logs"  # noqa: S608


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode: readers never block the writer, and with synchronous=NORMAL
    a committed transaction survives the process being killed (not a power cut)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA journal_size_limit=67108864")
    except BaseException:
        # A full disk can refuse the WAL switch; the caller retries with a new connection.
        conn.close()
        raise
    return conn
