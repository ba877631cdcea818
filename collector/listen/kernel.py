"""The kernel's own per-socket UDP drop counts, from /proc/net/udp and /proc/net/udp6.

A datagram the kernel drops because the socket's receive buffer is full never reaches the
collector; this is the only place that loss shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

_TABLES = (Path("/proc/net/udp"), Path("/proc/net/udp6"))


def parse_udp_table(text: str) -> dict[int, int]:
    """Map socket inode to its `drops` column from one /proc/net/udp* table."""
    drops: dict[int, int] = {}
    lines = text.splitlines()
    if not lines:
        return drops
    header = lines[0].split()
    if not header or header[-1] != "drops":
        return drops
    # Rows: sl, local, remote, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode, ref,
    # pointer, drops.
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        try:
            drops[int(fields[9])] = int(fields[-1])
        except ValueError:
            continue
    return drops


def udp_drops(inodes: Iterable[int], tables: Iterable[Path] = _TABLES) -> dict[int, int]:
    """Drop counts for the sockets with these inodes (absent where unknown)."""
    wanted = set(inodes)
    found: dict[int, int] = {}
    for table in tables:
        try:
            text = table.read_text()
        except OSError:
            continue
        for inode, count in parse_udp_table(text).items():
            if inode in wanted:
                found[inode] = count
    return found
