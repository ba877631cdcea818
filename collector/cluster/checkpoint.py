"""Where this node's materializer stands, kept beside the local store."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from collector.cluster.errors import ClusterError


@dataclass
class Position:
    """The last stream sequence applied, the last id given, and per `node.boot` the batch
    numbers applied (to drop a batch stored twice after the duplicate window): every
    number up to a floor, and those above it, as `[floor, *above]`. `stream` is the
    creation time of the LOGS that `seq` counts in ("" until known): a LOGS deleted and
    made again restarts its sequences, so a sequence alone cannot tell the two apart."""

    seq: int = 0
    last_id: int = 0
    applied: dict[str, list[int]] = field(default_factory=dict)
    stream: str = ""

    def seen(self, key: str, n: int) -> bool:
        """Whether batch `n` of `key` was applied."""
        applied = self.applied.get(key)
        return applied is not None and (n <= applied[0] or n in applied[1:])

    def mark(self, key: str, n: int) -> None:
        """Record batch `n` of `key` as applied (batches can arrive out of order when an
        earlier one was spooled and a later one was acknowledged)."""
        floor, *above = self.applied.get(key, [0])
        extra = {*above, n}
        while floor + 1 in extra:
            floor += 1
            extra.discard(floor)
        self.applied[key] = [floor, *sorted(extra)]


class Checkpoint:
    """One-row SQLite file, written after the store has committed what it covers."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("CREATE TABLE IF NOT EXISTS position (one INTEGER PRIMARY KEY "
                             "CHECK (one = 1), seq INTEGER, last_id INTEGER, applied TEXT, "
                             "stream TEXT NOT NULL DEFAULT '')")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(position)")}
            if "stream" not in columns:
                # A checkpoint written before the stream's identity was kept.
                self._db.execute("ALTER TABLE position ADD COLUMN stream TEXT NOT NULL "
                                 "DEFAULT ''")
        except sqlite3.Error as exc:
            raise ClusterError(f"cannot open {path}: {exc}") from None

    def load(self) -> Position:
        """The saved position (zeros: apply the stream from its start)."""
        row = self._db.execute("SELECT seq, last_id, applied, stream FROM position"
                               ).fetchone()
        if row is None:
            return Position()
        return Position(int(row[0]), int(row[1]), dict(json.loads(row[2])), str(row[3]))

    def save(self, position: Position) -> None:
        """Replace the saved position."""
        self._db.execute("INSERT OR REPLACE INTO position VALUES (1, ?, ?, ?, ?)",
                         (position.seq, position.last_id, json.dumps(position.applied),
                          position.stream))

    def close(self) -> None:
        """Close the file."""
        self._db.close()
