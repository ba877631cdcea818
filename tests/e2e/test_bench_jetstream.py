"""bench/jetstream.py runs end to end with tiny settings: both setups (R1 on one server,
R3 on three), each batch size published, acknowledged and read back (the wiring, not the
speed: no rate is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_jetstream_bench_runs_both_setups_and_compares_them() -> None:
    """Two batch sizes in R1 and R3: every row has acked messages, no errors and a read-back
    rate, and each R3 row is set against its R1 baseline."""
    done = subprocess.run(
        [sys.executable, "bench/jetstream.py", "--duration", "0.5", "--batches", "1,16",
         "--window", "16", "--read-seconds", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for setup in ("R1", "R3"):
        for lines in (1, 16):
            row = re.search(rf"^\s+{setup}\s+{lines}\s+16\s+\S+\s+(\d+)\s.*\s(\d+)\s+(\d+)$",
                            done.stdout, re.MULTILINE)
            assert row is not None, out
            acked, errors, read = (int(group) for group in row.groups())
            assert acked > 0, out
            assert errors == 0, out
            assert read > 0, out
    assert len(re.findall(r"ratio R3/R1 \(baseline, same run\): \d", done.stdout)) == 2, out
