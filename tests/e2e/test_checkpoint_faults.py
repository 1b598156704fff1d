"""Faults in checkpoints on the shared local Ray (2 CPU workers, ZeRO-1 so that both ranks write shards):
a worker SIGKILLed while it writes a checkpoint, and a resume whose latest checkpoint is corrupt.

Each test writes how long the run took to recover into its run directory (``recovery.json``);
docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from distgan.persist import checkpoint
from distgan.launch.train import train
from distgan.tracking.jsonl import read_metrics
from tiny_run import tiny

pytestmark = pytest.mark.ray

STEPS = ("train.steps=8", "deepspeed.zero_stage=1")  # checkpoints at 3, 6 and 8; two kept


def committed(run: Path) -> str | None:
    """The newest checkpoint Ray Train has recorded as committed."""
    try:
        latest = json.loads((run / "checkpoint_manager_snapshot.json").read_text())["latest_checkpoint_result"]
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return latest["checkpoint_dir_name"] if latest else None


def record_attempt(loop_config: dict) -> None:
    """The worker function; rank 0 first notes the checkpoint Ray hands over and keeps distgan's log lines
    (with their times) in ``worker.log``."""
    import ray.train

    from distgan.launch import session as session_mod

    if ray.train.get_context().get_world_rank() == 0:
        run = Path(loop_config["run_dir"])
        ckpt = ray.train.get_checkpoint()
        with (run / "attempts").open("a") as f:
            f.write((Path(ckpt.path).name if ckpt else "none") + "\n")
        handler = logging.FileHandler(run / "worker.log")
        handler.setFormatter(logging.Formatter("%(created).3f %(levelname)s %(message)s"))
        logger = logging.getLogger("distgan")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    session_mod.train_fn(loop_config)


def kill_rank1_writing_checkpoint_6(loop_config: dict) -> None:
    """The worker function, except that rank 1 dies once while it writes its part of checkpoint_000006 to the
    run directory: after its engine shards, before its manifest (Ray's upload is swapped for one that stops
    there). It waits for Ray to commit checkpoint_000003 first, so the restart has that one to resume."""
    import ray.train
    from ray.train.v2._internal.execution import storage

    run = Path(loop_config["run_dir"])
    marker = run / "killed-once"
    copy_files = storage._pyarrow_fs_copy_files

    def dying_copy(source, destination, *args, **kwargs):
        if not str(destination).endswith("checkpoint_000006") or marker.exists():
            return copy_files(source, destination, *args, **kwargs)
        deadline = time.monotonic() + 60
        while committed(run) != "checkpoint_000003" and time.monotonic() < deadline:
            time.sleep(0.1)
        written = []
        for path in sorted(Path(source).rglob("*")):
            if path.is_file() and not path.name.startswith("manifest_"):
                dest = Path(destination) / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                written.append(str(path.relative_to(source)))
        marker.write_text(json.dumps({"time": time.time(), "written": written, "committed": committed(run)}))
        os.kill(os.getpid(), signal.SIGKILL)

    if ray.train.get_context().get_world_rank() == 1:
        storage._pyarrow_fs_copy_files = dying_copy
    record_attempt(loop_config)


def resumed_at(run: Path) -> tuple[float, str]:
    """When the (last) attempt restored its checkpoint, and the log line saying so."""
    lines = [line for line in (run / "worker.log").read_text().splitlines() if "resumed from step" in line]
    assert lines, (run / "worker.log").read_text()
    return float(lines[-1].split()[0]), lines[-1]


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x)


@pytest.fixture(scope="module")
def straight(local_ray, tmp_path_factory) -> Path:
    """The uninterrupted run every faulted one is compared with."""
    storage = tmp_path_factory.mktemp("straight")
    result = train(tiny(*STEPS), name="straight", storage=storage, progress=False)
    assert result.metrics["step"] == 8
    return storage / "straight"


def test_worker_killed_while_writing_a_checkpoint(straight, tmp_path):
    result = train(tiny(*STEPS), name="killed", storage=tmp_path, progress=False,
                   train_loop=kill_rank1_writing_checkpoint_6)
    run = tmp_path / "killed"
    assert (run / "killed-once").exists(), "the worker was never killed"
    killed = json.loads((run / "killed-once").read_text())
    # It died with its optimizer shards in checkpoint_000006 and no manifest: a partial write Ray never committed.
    assert killed["committed"] == "checkpoint_000003"
    assert any("zero_pp_rank_1" in f for f in killed["written"]), killed["written"]
    assert (run / "attempts").read_text().split() == ["none", "checkpoint_000003"]
    resumed_time, line = resumed_at(run)
    assert "resumed from step 3" in line

    assert result.metrics["step"] == 8
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [2, 4, 6, 8]
    # The rewrite of checkpoint_000006 after the restart replaced the partial one, and it is whole.
    assert checkpoint.verify(run / "checkpoint_000006").world_size == 2
    assert sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir()) == ["checkpoint_000006", "checkpoint_000008"]
    # Restarted from step 3, the run ends bit-identical to the uninterrupted one.
    assert same_weights(run / "generator.safetensors", straight / "generator.safetensors")
    (run / "recovery.json").write_text(json.dumps({"steps_lost": 6 - 3, "seconds": resumed_time - killed["time"]}))


def test_corrupt_latest_checkpoint_falls_back_when_a_run_is_extended(straight, tmp_path, caplog):
    run = tmp_path / "extended"
    shutil.copytree(straight, run)  # a finished 8-step run: checkpoints 6 and 8, Ray's latest 8
    for leftover in ("attempts", "worker.log"):
        (run / leftover).unlink(missing_ok=True)
    bad = run / "checkpoint_000008" / "G" / "state" / "mp_rank_00_model_states.pt"
    bad.write_bytes(bad.read_bytes()[:-1000])

    started = time.time()
    with caplog.at_level(logging.WARNING, logger="distgan"):
        result = train(tiny("train.steps=9", *STEPS[1:]), name="extended", storage=tmp_path, progress=False,
                       train_loop=record_attempt)
    # The driver said so before starting, naming the file; the workers refused it and fell back.
    assert f"{bad} has" in caplog.text and "resuming from checkpoint_000006 instead" in caplog.text
    assert (run / "attempts").read_text().split() == ["checkpoint_000008"]
    worker_log = (run / "worker.log").read_text()
    assert f"{bad} has" in worker_log and "truncated" in worker_log, worker_log
    resumed_time, line = resumed_at(run)
    assert "resumed from step 6" in line

    assert result.metrics["step"] == 9
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6, 8, 9]
    # Step 8 trained again from checkpoint 6 gives the uninterrupted run's step-8 numbers exactly.
    again = next(r for r in records if r["step"] == 8)
    before = next(r for r in read_metrics(straight / "metrics.jsonl") if r["step"] == 8)
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_g", "grad_norm_d", "images_seen"):
        assert again[key] == before[key], key
    # The next checkpoint got a number above the refused one; Ray dropped checkpoint 6 only once it existed.
    assert committed(run) == "checkpoint_000009"
    assert checkpoint.verify(run / "checkpoint_000009").step == 9
    assert sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir()) == ["checkpoint_000008", "checkpoint_000009"]
    (run / "recovery.json").write_text(json.dumps({"steps_lost": 8 - 6, "seconds": resumed_time - started}))
