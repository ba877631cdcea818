"""The batch encoding: one JetStream message, records of one node, without final ids.

Version 1 is JSON lines (language-neutral, unlike `marshal`, so nodes can be upgraded one
at a time): a header object `{"v": 1, "node": ..., "boot": ..., "n": ...}`, then one
array per record in `FIELDS` order. Ids are not sent: every materializer gives them in
stream order (see `collector.cluster.ids`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collector.cluster.errors import ClusterError
from collector.record import Record

VERSION = 1
FIELDS = ("received_us", "emitted_at", "app", "source", "host", "format", "kind", "line",
          "method", "path", "status", "msecs", "size", "pid", "worker")
_TEXT = (2, 3, 4, 5, 6, 7)


@dataclass(frozen=True, slots=True)
class BatchId:
    """Who published a batch: node name, boot (random per process start), batch number."""

    node: str
    boot: str
    n: int

    @property
    def msg_id(self) -> str:
        """The `Nats-Msg-Id` JetStream de-duplicates on."""
        return f"{self.node}.{self.boot}.{self.n}"


def encode(batch: BatchId, records: Sequence[Record]) -> bytes:
    """The message body for `records`; their ids are sent only as receive times."""
    return assemble(batch, [row(r) for r in records])


def row(r: Record) -> str:
    """One record's line of a message body (a string: held while a batch waits, it is
    one object the garbage collector does not track, not a Record and its fields)."""
    return json.dumps([r.id, r.emitted_at, r.app, r.source, r.host, r.format, r.kind,
                       r.line, r.method, r.path, r.status, r.msecs, r.size, r.pid,
                       r.worker], separators=(",", ":"), ensure_ascii=False)


def assemble(batch: BatchId, rows: Sequence[str]) -> bytes:
    """The message body: the batch's header, then `rows` (from `row`)."""
    head = json.dumps({"v": VERSION, "node": batch.node, "boot": batch.boot, "n": batch.n},
                      separators=(",", ":"))
    return "\n".join([head, *rows]).encode()


def decode(body: bytes) -> tuple[BatchId, list[Record]]:
    """The batch id and records (ids 0, to be assigned) of a message body."""
    try:
        lines = body.decode().split("\n")
        head = json.loads(lines[0])
        version = head.get("v") if isinstance(head, dict) else None
        if version != VERSION:
            raise ClusterError(f"unknown batch version {version!r}")
        batch = BatchId(_str(head["node"]), _str(head["boot"]), int(head["n"]))
        records = [_record(json.loads(line)) for line in lines[1:]]
    except ClusterError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ClusterError(f"cannot decode batch: {exc}") from None
    return batch, records


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _record(row: Any) -> Record:
    if not isinstance(row, list) or len(row) != len(FIELDS):
        raise TypeError(f"a record is an array of {len(FIELDS)} fields")
    for index in _TEXT:
        _str(row[index])
    return Record(0, row[1], row[2], row[3], row[4], row[5], row[7], row[6], *row[8:])
