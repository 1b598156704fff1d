"""``distgan train --address`` joins a running Ray cluster instead of starting its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tiny_run import OVERRIDES

pytestmark = pytest.mark.ray


def test_train_joins_the_cluster_at_address(local_ray, tmp_path):
    from ray.util.state import list_jobs

    address = local_ray.get_runtime_context().gcs_address
    # Ask this cluster by its address: another Ray on the machine may hold the default dashboard port.
    before = {j.job_id for j in list_jobs(address=address)}
    proc = subprocess.run(
        [sys.executable, "-m", "distgan", "train", *OVERRIDES, "train.steps=2", "train.checkpoint_every=2", "eval.every=0",
         "--address", address, "--name", "joined", "--storage", str(tmp_path)],
        env=dict(os.environ, PYTHONWARNINGS="ignore"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "joined" / "generator.safetensors").is_file()
    # The driver ran as a job of this cluster, not of an embedded one of its own.
    new = [j for j in list_jobs(address=address) if j.job_id not in before]
    assert any("joined" in (j.entrypoint or "") for j in new), [(j.job_id, j.entrypoint) for j in new]
