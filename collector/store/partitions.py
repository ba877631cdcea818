"""Partition naming and retention choices: pure functions over file names and sizes.

Each partition is one SQLite file holding the records whose id (the microsecond of
receipt) falls in [its start, the next partition's start). Retention deletes whole files,
so the space comes back at once, with no VACUUM and no long delete transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_NAME = re.compile(r"^logs-(\d{16,20})\.db$")


@dataclass(frozen=True, order=True)
class Partition:
    """A partition file and the first id it may hold."""

    start: int
    path: Path

    def files(self) -> list[Path]:
        """The database file and the WAL and shared-memory files beside it."""
        return [self.path, self.path.with_name(self.path.name + "-wal"),
                self.path.with_name(self.path.name + "-shm")]


def partition_start(record_id: int, span_us: int) -> int:
    """The start of the partition that holds `record_id`."""
    return record_id - record_id % span_us


def partition_path(directory: Path, start: int) -> Path:
    """The file of the partition starting at `start`."""
    return directory / f"logs-{start:016d}.db"


def list_partitions(directory: Path) -> list[Partition]:
    """Existing partitions, oldest first."""
    found: list[Partition] = []
    if not directory.is_dir():
        return found
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Partition(int(match.group(1)), entry))
    found.sort()
    return found


def expired(partitions: Sequence[Partition], sizes: Sequence[int], *, now_us: int,
            retention_us: int, max_bytes: int) -> list[Partition]:
    """Partitions to delete, oldest first; the newest one is never deleted.

    By age: a partition whose whole range (up to the next one's start) is older than the
    retention. By size: then the oldest ones until the total fits in `max_bytes` (0: no
    limit).
    """
    doomed: list[Partition] = []
    if len(partitions) < 2:
        return doomed
    total = sum(sizes)
    for index, partition in enumerate(partitions[:-1]):
        end = partitions[index + 1].start
        too_old = retention_us > 0 and end <= now_us - retention_us
        too_big = max_bytes > 0 and total > max_bytes
        if not (too_old or too_big):
            break
        doomed.append(partition)
        total -= sizes[index]
    return doomed
