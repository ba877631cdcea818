"""The spool: batches NATS did not acknowledge, on disk, first in first out, bounded."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from collector.cluster.errors import ClusterError


@dataclass(frozen=True, slots=True)
class Spooled:
    """One batch waiting in the spool."""

    seq: int
    msg_id: str
    body: bytes
    lines: int


class Spool:
    """An SQLite FIFO in the data dir; `full` once its bodies reach `max_bytes`.

    Small synchronous writes: the spool is written only while NATS does not answer, one
    row per batch, so the event loop is held for one insert at a time.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY "
                             "AUTOINCREMENT, msg_id TEXT NOT NULL, body BLOB NOT NULL, "
                             "lines INTEGER NOT NULL)")
            row = self._db.execute("SELECT count(*), coalesce(sum(lines), 0), "
                                   "coalesce(sum(length(body)), 0) FROM spool").fetchone()
        except sqlite3.Error as exc:
            raise ClusterError(f"cannot open the spool {path}: {exc}") from None
        self.batches, self.lines, self.bytes = int(row[0]), int(row[1]), int(row[2])

    @property
    def full(self) -> bool:
        """Whether the spool holds `max_bytes` or more."""
        return self.bytes >= self.max_bytes

    def push(self, msg_id: str, body: bytes, lines: int) -> None:
        """Add a batch at the end."""
        try:
            self._db.execute("INSERT INTO spool (msg_id, body, lines) VALUES (?, ?, ?)",
                             (msg_id, body, lines))
        except sqlite3.Error as exc:
            raise ClusterError(f"cannot write the spool: {exc}") from None
        self.batches += 1
        self.lines += lines
        self.bytes += len(body)

    def first(self) -> Spooled | None:
        """The oldest batch, if any."""
        try:
            row = self._db.execute("SELECT seq, msg_id, body, lines FROM spool "
                                   "ORDER BY seq LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise ClusterError(f"cannot read the spool: {exc}") from None
        return None if row is None else Spooled(int(row[0]), row[1], bytes(row[2]),
                                                int(row[3]))

    def remove(self, item: Spooled) -> None:
        """Drop a batch NATS has acknowledged."""
        try:
            self._db.execute("DELETE FROM spool WHERE seq = ?", (item.seq,))
        except sqlite3.Error as exc:
            raise ClusterError(f"cannot write the spool: {exc}") from None
        self.batches -= 1
        self.lines -= item.lines
        self.bytes -= len(item.body)

    def close(self) -> None:
        """Close the file."""
        self._db.close()
