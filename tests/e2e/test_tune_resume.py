"""``distgan tune`` SIGKILLed together with its embedded Ray mid-sweep; ``--resume`` completes the sweep
without running a finished trial again. The sweep is over StyleGAN2's own keys: G's learning rate, R1's gamma
and the mapping network's depth, each trial built and exported with its values."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distgan import load_config
from distgan.launch.tune import run_tune
from distgan.tracking.jsonl import read_metrics
from processes import kill_tree
from test_tune import SWEEP
from tiny_run import STYLEGAN2

pytestmark = pytest.mark.ray

SPACE = ("tune.space={optim.g.lr: {loguniform: [1.0e-4, 3.0e-3]}, loss.d_reg.weight: {loguniform: [1.0e-3, 1.0e-1]}, "
         "model.stylegan2.mapping_layers: {choice: [1, 3]}}")


def finished_trials(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in (sweep / "trials").glob("*/generator.safetensors"))


def terminated_in_saved_state(sweep: Path) -> set[str]:
    """Trials that Tune's saved experiment state (written at least every 10 s) records as finished."""
    done = set()
    for path in (sweep / "tune").glob("experiment_state-*.json"):
        with contextlib.suppress(ValueError, OSError):  # caught mid-write
            for state, _ in json.loads(path.read_text())["trial_data"]:
                state = json.loads(state) if isinstance(state, str) else state
                if state["status"] == "TERMINATED":
                    done.add(f"trial_{state['trial_id']}")
    return done


def test_killed_sweep_resumes_and_keeps_finished_trials(local_ray, tmp_path):
    # Optuna (TPE) proposes the trials, so its state must survive the kill too: resumed, it proposes the one
    # trial left, not two.
    overrides = SWEEP + STYLEGAN2 + (SPACE, "scaling.num_workers=1", "tune.num_samples=2", "tune.max_concurrent=1",
                                     "tune.search=optuna", "tracking.wandb=false", "train.steps=20")
    sweep = tmp_path / "resume"
    proc = subprocess.Popen([sys.executable, "-m", "distgan", "tune", *overrides, "--name", "resume",
                             "--storage", str(tmp_path)], env=dict(os.environ, PYTHONWARNINGS="ignore"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not terminated_in_saved_state(sweep) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert terminated_in_saved_state(sweep), "no trial finished within 5 minutes"
        assert proc.poll() is None, "the sweep ended before it could be killed"
    finally:
        kill_tree(proc.pid)  # the driver and its embedded Ray all at once, as in a crash
    assert len(finished_trials(sweep)) < 2, "the sweep finished before the kill"
    kept = {name: (sweep / "trials" / name / "metrics.jsonl").read_bytes()
            for name in terminated_in_saved_state(sweep)}

    result = run_tune(None, name="resume", storage=tmp_path, resume=True)
    assert len(result.rows) == 2 and all(r["status"] == "finished" and r["step"] == 20 for r in result.rows)
    for name, metrics in kept.items():
        trial = sweep / "trials" / name
        assert (trial / "metrics.jsonl").read_bytes() == metrics, f"finished trial {name} ran again"
        assert len(list((trial / "attempts").glob("attempt_*"))) == 1
    for row in result.rows:
        trial = sweep / "trials" / row["trial"]
        assert read_metrics(trial / "metrics.jsonl")[-1]["step"] == 20
        exported = json.loads((trial / "generator.json").read_text())["model"]
        assert exported["family"] == "stylegan2"
        assert exported["stylegan2"]["mapping_layers"] == row["values"]["model.stylegan2.mapping_layers"]
        assert load_config(trial / "config.yaml").loss.d_reg.weight == \
            pytest.approx(row["values"]["loss.d_reg.weight"], rel=1e-9)
    assert result.best is not None and (sweep / "best" / "generator.safetensors").is_file()
