"""The garbage collector's policy for a running collector process.

Ingest allocates a few container objects per line (the record, its row tuple, the
decoder's result), and records live until the store writer acknowledges them. With
CPython's default thresholds (700, 10, 10) a generation-0 pass ran every couple of
hundred lines, and records still waiting for their acknowledgement were promoted and
scanned again by the older generations: 9 % of the main process's CPU at 60,000 lines/s
(`bench/profile.py --rules --native`). Records form no reference cycles, so reference
counting frees them whatever the thresholds; collecting less often only scans fewer of
them. What was built before serving (modules, config) is frozen: never scanned again.
"""

from __future__ import annotations

import gc

# About 15,000 lines of allocations between generation-0 passes; each pass then scans at
# most this many objects (a millisecond or two), a few times a second under full load.
GENERATION0 = 50_000
OLDER = (20, 20)


def apply() -> tuple[int, int, int]:
    """Freeze what exists now and raise the thresholds; return the previous thresholds."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GENERATION0, *OLDER)
    return previous
