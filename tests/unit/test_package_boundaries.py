"""The dyno side stands alone: `shipper` and `logwire` import nothing of the collector."""

from __future__ import annotations

import subprocess
import sys

import pytest

DYNO_MODULES = ["shipper.cli", "shipper.sidecar", "shipper.encoder", "shipper.batcher",
                "shipper.loadgen", "shipper.uwsgi_config", "logwire.native",
                "logwire.logcrypto", "logwire.prefix", "logwire.address", "logwire.bucket",
                "logwire.logsetup", "logwire.runner"]


@pytest.mark.parametrize("module", DYNO_MODULES)
def test_dyno_side_imports_no_server_package(module: str) -> None:
    """Importing a dyno-side module in a fresh interpreter loads neither `collector` nor
    `alarms`, so the sidecar stays small and the wire format has one home."""
    probe = (f"import sys, {module}; "
             "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} "
             "& {'collector', 'alarms'})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "", f"{module} imports {out.stdout.strip()}"
