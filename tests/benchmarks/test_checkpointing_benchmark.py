"""benchmarks/checkpointing.py measures what it claims: checkpointed synthesis blocks keep fewer activations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "checkpointing.py"


def test_checkpointing_keeps_a_fraction_of_the_activations_on_cpu(tmp_path):
    config = BENCHMARK.parents[1] / "configs" / "stylegan2_digits.yaml"  # the CPU config: a few ms a pass
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--config", str(config), "--precision", "fp32",
                           "--batch", "2", "--repeats", "1"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    off, on = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (off["checkpointing"], on["checkpointing"]) == (False, True)
    assert off["resolution"] == on["resolution"] == 16 and off["device"] == "cpu"
    # Only block boundaries (and the mapping network's activations) stay.
    assert 0 < on["saved_bytes"] < off["saved_bytes"] / 4
    assert all(r[p]["seconds"] > 0 for r in (off, on) for p in ("main", "pl"))
    assert "checkpointing keeps" in proc.stdout
