"""A store that settles later, as the cluster's publisher does, when the test says so."""

from __future__ import annotations

from collections.abc import Sequence

from collector.ingest import Settle
from collector.record import Record


class Settling:
    """Takes records and keeps each settle callback in `pending` for the test to call."""

    def __init__(self) -> None:
        self.pending: list[Settle] = []
        self.records: list[Record] = []

    async def open(self) -> int:
        """Nothing stored."""
        return 0

    def append(self, records: Sequence[Record]) -> bool:
        """Take records (collector-made ones, unsettled)."""
        self.records.extend(records)
        return True

    def append_settled(self, records: Sequence[Record], settle: Settle) -> bool:
        """Take records; settle later."""
        self.records.extend(records)
        self.pending.append(settle)
        return True
