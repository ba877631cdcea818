"""The benchmarks run on tests/support's harness: one trial per search of each benchmark
against real processes, checking the wiring (not the speed: nothing here asserts a rate
was held)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ONE_TRIAL = ["--max-trials", "1", "--retries", "0", "--duration", "1", "--start", "500"]
# Held or not, one trial at 500/s leaves a figure of 500 or 0 after exactly one trial.
FIGURE = r"max zero-loss rate[^:]*: (500|0) after 1 trials"


def bench(script: str, *args: str) -> str:
    """Run bench/SCRIPT with one trial per search; its output."""
    done = subprocess.run([sys.executable, f"bench/{script}", *ONE_TRIAL, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_ingest_runs_a_collector_trial_and_a_bare_receiver_trial() -> None:
    """ingest.py: one collector trial (fed by bench.sender, watched by the store poller and
    a follower) and one bare-receiver trial, then both figures and their ratio."""
    out = bench("ingest.py")
    assert re.search(r"^collector\s+500\s+1\.0\s+500\s", out, re.MULTILINE), out
    assert re.search(r"^\s+bare\s+500\s+1\.0\s+500\s", out, re.MULTILINE), out
    assert len(re.findall(FIGURE, out)) == 2, out
    assert "ratio collector/baseline: " in out


def test_native_runs_one_trial_per_format() -> None:
    """native.py: one crypto and one native trial through `shipper loadgen`, then both
    figures with their bytes per line, and the ratio."""
    out = bench("native.py")
    assert re.search(r"^\s*crypto\s+500\s", out, re.MULTILINE), out
    assert re.search(r"^\s*native\s+500\s", out, re.MULTILINE), out
    assert len(re.findall(FIGURE, out)) == 2, out
    assert len(re.findall(r"B/line on the wire", out)) == 2, out
    assert "ratio native/crypto: " in out


def test_alarms_runs_both_configs_and_the_latency_part() -> None:
    """alarms.py: one trial without and one with the rules (sent by the C sender from its
    pool; alarms to tests/support's webhook receiver; silences made through the API,
    grouping on), then probes through a rule to that receiver with the silences active."""
    out = bench("alarms.py", "--latency-seconds", "1", "--idle-seconds", "1",
                "--latency-rate", "500", "--silences", "20", "--max-lines", "2000")
    assert "C sender: a pool of 2000 lines encoded in " in out, out
    assert re.search(r"^\s+500\s+none\s+1\s", out, re.MULTILINE), out
    assert re.search(r"^\s+500\s+50 rules\s+1\s", out, re.MULTILINE), out
    assert len(re.findall(FIGURE, out)) == 2, out
    assert "20 silences created through POST /v1/silences in " in out, out
    assert "20 listed active" in out, out
    assert re.search(r"^20 silences active .* of them probes: 0$", out, re.MULTILINE), out
    # Probes sent: about 1 s / 40 ms each part; each either arrived or is counted missing.
    for label in ("idle (baseline)", "500 lines/s"):
        found = re.search(rf"{re.escape(label)}: (\d+) probes, .* missing (\d+)", out)
        assert found is not None, out
        assert int(found.group(1)) + int(found.group(2)) >= 10, out
