"""The record: one accepted log line and what is known about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.routerlog import router_extras

# Columns in storage order; `row()` and `from_row()` follow it.
COLUMNS = ("id", "emitted_at", "app", "source", "host", "format", "kind", "line", "method",
           "path", "status", "msecs", "size", "pid", "worker")

Row = tuple[int, float | None, str, str, str, str, str, str, str | None, str | None,
            int | None, float | None, int | None, int | None, int | None]


@dataclass(slots=True)
class Record:
    """One log line.

    `id` is unique and increasing for the collector's whole life, across restarts: it is
    the microsecond of receipt, bumped by one where two lines share a microsecond, so it
    also tells `received_at` without a column of its own (see `collector.ingest.Ids`).
    `kind` is `log` for a line a sender logged and `marker` for one the collector wrote
    about the stream (lines lost, alarms raised).
    """

    id: int
    emitted_at: float | None
    app: str
    source: str
    host: str
    format: str
    line: str
    kind: str = "log"
    method: str | None = None
    path: str | None = None
    status: int | None = None
    msecs: float | None = None
    size: int | None = None
    pid: int | None = None
    worker: int | None = None

    @property
    def received_at(self) -> float:
        """Seconds since the epoch at which the collector received the line."""
        return self.id / 1e6

    def row(self) -> Row:
        """The record as a storage row, in `COLUMNS` order."""
        return (self.id, self.emitted_at, self.app, self.source, self.host, self.format,
                self.kind, self.line, self.method, self.path, self.status, self.msecs,
                self.size, self.pid, self.worker)

    @classmethod
    def from_row(cls, row: Row) -> Record:
        """Rebuild a record from a storage row."""
        return cls(row[0], row[1], row[2], row[3], row[4], row[5], row[7], row[6], *row[8:])

    def to_json(self) -> dict[str, Any]:
        """The record as the API sends it: every field, `received_at` included."""
        doc: dict[str, Any] = {
            "id": self.id, "received_at": self.received_at, "emitted_at": self.emitted_at,
            "app": self.app, "source": self.source, "host": self.host, "format": self.format,
            "kind": self.kind, "line": self.line,
        }
        if self.status is not None:
            doc.update(method=self.method, path=self.path, status=self.status,
                       msecs=self.msecs, size=self.size, pid=self.pid, worker=self.worker)
        if self.source == "router" and self.line.startswith("at="):
            # A Heroku router line's other fields are derived here, when a line is sent,
            # rather than stored: only router lines pay, and only when read.
            extras = router_extras(self.line)
            if extras is not None:
                doc.update(extras)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Record:
        """Inverse of `to_json`, for clients of the API."""
        return cls(
            id=int(doc["id"]), emitted_at=doc.get("emitted_at"), app=doc["app"],
            source=doc["source"], host=doc.get("host", ""), format=doc.get("format", ""),
            line=doc["line"], kind=doc.get("kind", "log"), method=doc.get("method"),
            path=doc.get("path"), status=doc.get("status"), msecs=doc.get("msecs"),
            size=doc.get("size"), pid=doc.get("pid"), worker=doc.get("worker"))
