"""The outbox in one SQLite file (`DATA_DIR/alarms.db`), WAL, synchronous=FULL.

Notifications are rare next to log lines, so every step is its own transaction, fsynced:
an alarm that `add` accepted survives a crash of the collector and of the machine. All
access goes through one thread (SQLite connections are not shared), so the event loop
never waits on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alarms.notification import Notification
from alarms.outbox.base import Entry, State
from alarms.restore import latest_per_alert
from collector.errors import StoreError

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    alarm TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    outcome TEXT,
    delivered_at REAL,
    updated_at REAL NOT NULL,
    notification TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, created_at);
"""
_COLUMNS = ("state, attempts, next_attempt, last_error, outcome, delivered_at, updated_at, "
            "notification")


_UPDATE = ("UPDATE outbox SET state = ?, attempts = ?, next_attempt = ?, last_error = ?, "
           "outcome = ?, delivered_at = ?, updated_at = ? WHERE id = ?")


def _state(entry: Entry) -> tuple[Any, ...]:
    return (entry.state, entry.attempts, entry.next_attempt, entry.last_error, entry.outcome,
            entry.delivered_at, entry.updated_at, entry.id)


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(notification=Notification.from_json(row[7]), state=row[0], attempts=row[1],
                 next_attempt=row[2], last_error=row[3], outcome=row[4], delivered_at=row[5],
                 updated_at=row[6])


class SqliteOutbox:
    """The embedded outbox (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        executor = self._executor
        if executor is None:
            raise StoreError("the alarm outbox is not open")

        def call() -> T:
            assert self._conn is not None
            try:
                return work(self._conn)
            except sqlite3.Error as exc:
                raise StoreError(f"alarm outbox {self._path}: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(executor, call)

    async def open(self) -> list[Entry]:
        """Create the file if needed; the pending entries, oldest first."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")

        def connect() -> None:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise sqlite3.OperationalError(str(exc)) from exc
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            self._conn = conn

        executor = self._executor
        try:
            await asyncio.get_running_loop().run_in_executor(executor, connect)
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            self._executor = None
            raise StoreError(f"cannot open the alarm outbox {self._path}: {exc}") from exc
        return await self._select("WHERE state = 'pending' ORDER BY created_at", ())

    async def _select(self, where: str, args: tuple[Any, ...]) -> list[Entry]:
        query = f"SELECT {_COLUMNS} FROM outbox {where}"  # noqa: S608 - fixed text only
        return await self._run(lambda conn: [_entry(r) for r in conn.execute(query, args)])

    async def add(self, notifications: Sequence[Notification], now: float,
                  dues: Sequence[float] | None = None) -> set[str]:
        """Insert as pending, due now (or at their `dues`), in one transaction; the ids
        already there."""
        times = [now] * len(notifications) if dues is None else dues
        if len(times) != len(notifications):
            raise ValueError("one due time per notification")
        rows = [(n.id, n.app, n.alarm, n.created_at or now, due, now, n.to_json())
                for n, due in zip(notifications, times, strict=True)]

        def insert(conn: sqlite3.Connection) -> set[str]:
            known: set[str] = set()
            with conn:
                conn.execute("BEGIN")
                for row in rows:
                    inserted = conn.execute(
                        "INSERT OR IGNORE INTO outbox (id, app, alarm, created_at, state, "
                        "next_attempt, updated_at, notification) "
                        "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)", row).rowcount
                    if not inserted:
                        known.add(row[0])
            return known

        return await self._run(insert)

    async def save(self, entry: Entry) -> None:
        """Store the entry's delivery state (delivered, pending with its next attempt, or
        dead)."""
        args = _state(entry)
        await self._run(lambda conn: conn.execute(_UPDATE, args))

    async def save_many(self, entries: Sequence[Entry]) -> None:
        """`save` for several entries, in one transaction (one fsync)."""
        rows = [_state(entry) for entry in entries]

        def update(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(_UPDATE, rows)

        if rows:
            await self._run(update)

    async def trim_dead(self, keep: int, before: float) -> tuple[list[str], int]:
        """Delete dead letters last updated before `before`, then the oldest beyond
        `keep`, in one transaction; the ids deleted and the dead letters left."""
        def trim(conn: sqlite3.Connection) -> tuple[list[str], int]:
            with conn:
                conn.execute("BEGIN")
                ids = [row[0] for row in conn.execute(
                    "SELECT id FROM outbox WHERE state = 'dead' AND updated_at < ? "
                    "ORDER BY created_at, id", (before,))]
                (total,) = conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'dead'").fetchone()
                excess = total - len(ids) - keep
                if excess > 0:
                    ids += [row[0] for row in conn.execute(
                        "SELECT id FROM outbox WHERE state = 'dead' AND updated_at >= ? "
                        "ORDER BY created_at, id LIMIT ?", (before, excess))]
                conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            return ids, total - len(ids)

        return await self._run(trim)

    async def requeue(self, ids: Sequence[str] | None, now: float) -> list[Entry]:
        """Dead entries back to pending, attempts reset."""
        args: tuple[str, ...] = ()
        if ids is None:
            where = "WHERE state = 'dead'"
        else:
            marks = ", ".join("?" * len(ids))
            where, args = f"WHERE state = 'dead' AND id IN ({marks})", tuple(ids)
        if ids is not None and not ids:
            return []

        def move(conn: sqlite3.Connection) -> list[Entry]:
            with conn:
                conn.execute("BEGIN")
                rows = conn.execute(f"SELECT {_COLUMNS} FROM outbox {where}",  # noqa: S608
                                    args).fetchall()
                conn.execute("UPDATE outbox SET state = 'pending', attempts = 0, "  # noqa: S608
                             f"next_attempt = ?, updated_at = ? {where}", (now, now, *args))
            entries = [_entry(r) for r in rows]
            for entry in entries:
                entry.state, entry.attempts, entry.next_attempt = "pending", 0, now
                entry.updated_at = now
            return entries

        return await self._run(move)

    async def recent(self, state: State | None = None, app: str | None = None,
                     limit: int = 100) -> list[Entry]:
        """Newest first."""
        clauses: list[str] = []
        args: list[str] = []
        if state is not None:
            clauses.append("state = ?")
            args.append(state)
        if app is not None:
            clauses.append("app = ?")
            args.append(app)
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        return await self._select(f"{where}ORDER BY created_at DESC, id DESC LIMIT ?",
                                  (*args, limit))

    async def latest_alerts(self, limit: int) -> list[Notification]:
        """Newest first: the rows that name an alert, read newest first until `limit`
        alerts are found. (The outbox holds notifications one by one: a grouped send
        is made at delivery and never stored.)"""
        query = ("SELECT notification FROM outbox WHERE json_extract(notification, "
                 "'$.alert') <> '' ORDER BY created_at DESC, id DESC")

        def read(conn: sqlite3.Connection) -> list[Notification]:
            found: list[Notification] = []
            keys: set[str] = set()
            for (text,) in conn.execute(query):
                notification = Notification.from_json(text)
                found.append(notification)
                keys.add(notification.alert)
                if len(keys) > limit:
                    break
            return found

        return latest_per_alert(await self._run(read), limit)

    async def prune(self, before: float) -> int:
        """Delete delivered and silenced entries created before `before`."""
        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM outbox WHERE state IN ('delivered', "
                                "'silenced') AND "
                                "created_at < ?", (before,)).rowcount

        return await self._run(delete)

    async def close(self) -> None:
        """Close the connection and its thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(executor, shut)
        executor.shutdown(wait=True)
