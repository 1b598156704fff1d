"""``distgan.train`` end to end on the shared local Ray with 2 CPU workers and W&B offline:
the run directory, sampling, resuming a finished run, and surviving a killed worker."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

import distgan
from distgan.cli import main as cli_main
from distgan import load_config
from distgan.tracking.jsonl import read_metrics
from processes import kill_tree
from tiny_run import OVERRIDES, tiny

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def finished_run(local_ray, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    result = distgan.train(tiny(), name="tiny", storage=storage)
    return storage, result


def test_run_directory_has_everything(finished_run):
    storage, result = finished_run
    run = storage / "tiny"
    assert result.run_dir == run.resolve() and result.metrics["step"] == 6

    assert load_config(run / "config.yaml") == tiny()
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6]
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "d_acc_real", "d_acc_fake", "d_real_sign", "grad_norm_g",
                "grad_norm_d", "lr_g", "lr_d", "images_per_s", "images_seen"):
        assert all(r[key] is not None for r in records), key
    assert records[-1]["images_seen"] == 6 * 16 * 2
    assert all("reg_d" not in r for r in records), "no regularizer is configured, so none may be reported"
    assert records[-1]["lr_g"] == pytest.approx(2e-4)
    # Evaluated at the last step only (eval.every=500), across both workers, and reported through Ray.
    assert [("fid" in r) for r in records] == [False, False, True]
    assert records[-1]["fid"] > 0 and 0 <= records[-1]["precision"] <= 1 and "kid" in records[-1]
    assert result.metrics["fid"] == records[-1]["fid"]

    # Start-up breakdown: every phase from the call to the first step, in order.
    marks = json.loads((run / "startup.json").read_text())["marks"]
    order = ["start", "ray_ready", "worker_start", "data", "models", "engine_g", "engine_d", "evaluator",
             "restored", "first_step"]
    assert list(marks) == order and all(marks[a] <= marks[b] for a, b in zip(order, order[1:]))

    grids = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert grids == ["step_000003.png", "step_000006.png"]
    assert Image.open(run / "samples" / "step_000006.png").size[0] > 16 * 8

    # Ray kept the last two checkpoints, each with both engines and both ranks' manifests.
    ckpts = sorted(p.name for p in run.glob("checkpoint_*") if p.is_dir())
    assert ckpts == ["checkpoint_000003", "checkpoint_000006"]
    last = run / "checkpoint_000006"
    assert (last / "G").is_dir() and (last / "D").is_dir()
    assert {p.name for p in last.glob("manifest_rank*.json")} == {"manifest_rank0.json", "manifest_rank1.json"}
    assert json.loads((last / "train_state.json").read_text())["step"] == 6

    meta = json.loads((run / "generator.json").read_text())
    assert meta["ema"] is True and meta["step"] == 6 and meta["data_shape"] == [1, 16, 16]
    exported = load_file(str(run / "generator.safetensors"))
    in_ckpt = load_file(str(last / "generator.safetensors"))
    assert exported.keys() == in_ckpt.keys() and all((exported[k] == in_ckpt[k]).all() for k in exported)

    # W&B ran offline under the run directory with the run's id.
    wandb_id = (run / "wandb_id").read_text().strip()
    (wandb_run,) = (run / "wandb").glob(f"offline-run-*-{wandb_id}")
    # Its record file holds every logged step's losses; its media the sample grids.
    records_bytes = (wandb_run / f"run-{wandb_id}.wandb").read_bytes()
    assert records_bytes.count(b"loss_d") >= 3 and records_bytes.count(b"grad_norm_g") >= 3
    assert b'"fid"' in records_bytes and b'"precision"' in records_bytes
    assert len(list((wandb_run / "files" / "media" / "images").glob("samples_*.png"))) == 2


def test_sample_command(finished_run, tmp_path):
    storage, _ = finished_run
    run = storage / "tiny"
    assert cli_main(["sample", str(run), "--n", "10", "--out", str(tmp_path / "s.npz"), "--seed", "3"]) == 0
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (10, 1, 16, 16) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0
    assert cli_main(["sample", str(run / "generator.safetensors"), "--n", "9", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 17 + 1, 3 * 17 + 1)
    assert cli_main(["sample", str(run), "--n", "9", "--zoom", "3", "--out", str(tmp_path / "z.png")]) == 0
    zoomed, plain = np.asarray(Image.open(tmp_path / "z.png")), np.asarray(Image.open(tmp_path / "g.png"))
    assert np.array_equal(zoomed[::3, ::3], plain), "zoom must repeat pixels, not resample them"
    # Same seed, same samples.
    cli_main(["sample", str(run), "--n", "10", "--out", str(tmp_path / "t.npz"), "--seed", "3"])
    assert np.array_equal(np.load(tmp_path / "t.npz")["images"], images)
    assert cli_main(["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2


def test_rerun_with_same_name_resumes_and_extends(finished_run, capsys):
    storage, _ = finished_run
    result = distgan.train(tiny("train.steps=8"), name="tiny", storage=storage)
    assert "Resuming run 'tiny'" in capsys.readouterr().out
    records = read_metrics(storage / "tiny" / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert result.metrics["step"] == 8 and result.metrics["images_seen"] == 8 * 16 * 2


def test_resuming_with_another_model_is_refused(finished_run):
    storage, _ = finished_run
    with pytest.raises(distgan.ConfigError, match=r"model.g_width: 16 -> 32"):
        distgan.train(tiny("model.g_width=32"), name="tiny", storage=storage)


def record_start_checkpoint(loop_config: dict) -> None:
    """The worker function; rank 0 first notes which checkpoint this attempt starts from."""
    import ray.train

    from distgan.launch import session as session_mod

    if ray.train.get_context().get_world_rank() == 0:
        ckpt = ray.train.get_checkpoint()
        with (Path(loop_config["run_dir"]) / "attempts").open("a") as f:
            f.write((Path(ckpt.path).name if ckpt else "none") + "\n")
    session_mod.train_fn(loop_config)


def kill_rank1_between_checkpoints(loop_config: dict) -> None:
    """The worker function, except that rank 1 SIGKILLs itself once, at step 4 (checkpoints at 3 and 6).

    It waits a few seconds first: Ray Train's controller collects reports
    every 2 s, and a checkpoint counts only once it has been collected.
    """
    import time

    import ray.train

    from distgan.launch import session as session_mod

    marker = Path(loop_config["run_dir"]) / "killed-once"

    class DyingSession(session_mod.RaySession):
        def report(self, metrics, checkpoint_dir=None, name=None):
            super().report(metrics, checkpoint_dir, name)
            if self.rank == 1 and metrics.get("step") == 4 and not marker.exists():
                marker.touch()
                time.sleep(5)
                os.kill(os.getpid(), signal.SIGKILL)

    if ray.train.get_context().get_world_rank() == 1:
        session_mod.RaySession = DyingSession
    record_start_checkpoint(loop_config)


def test_killed_worker_resumes_from_checkpoint_exactly(finished_run):
    storage, _ = finished_run
    from distgan.launch.train import train

    # Beside the finished run 'tiny', in the same storage: another name is another run, from step 0 with its
    # own W&B id, whatever checkpoints its neighbour holds.
    result = train(tiny(), name="killed", storage=storage, train_loop=kill_rank1_between_checkpoints)
    run = storage / "killed"
    assert (run / "killed-once").exists(), "the worker was never killed"
    assert (run / "attempts").read_text().split() == ["none", "checkpoint_000003"]
    assert (run / "wandb_id").read_text() != (storage / "tiny" / "wandb_id").read_text()
    assert result.metrics["step"] == 6
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [2, 4, 6]
    # Restarted from step 3, the run ends bit-identical to the uninterrupted one.
    a = load_file(str(storage / "tiny" / "checkpoint_000006" / "generator.safetensors"))
    b = load_file(str(run / "generator.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def latest_committed_checkpoint(run: Path) -> Optional[str]:
    """The newest checkpoint Ray has recorded as complete: what a restart resumes from."""
    snapshot = run / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
    except (FileNotFoundError, json.JSONDecodeError):  # not yet written, or caught mid-write
        return None
    return latest["checkpoint_dir_name"] if latest else None


def test_killed_driver_resumes_with_the_same_name(finished_run, tmp_path):
    """``distgan train --name`` SIGKILLed together with its embedded Ray; running it again resumes the run."""
    import subprocess
    import sys
    import time

    from distgan.launch.train import train

    overrides = ("train.steps=40", "train.checkpoint_every=5", "train.log_every=5", "train.sample_every=20",
                 "eval.every=0")
    run = tmp_path / "driver"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "distgan", "train", *OVERRIDES, *overrides, "--name", "driver",
                             "--storage", str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while latest_committed_checkpoint(run) is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the driver ended before it could be killed"
        assert latest_committed_checkpoint(run), "no checkpoint was committed within 3 minutes"
    finally:
        kill_tree(proc.pid)  # the driver and its embedded Ray all at once, as in a crash
    latest = latest_committed_checkpoint(run)
    assert latest != "checkpoint_000040", "the driver finished before the kill"
    wandb_id = (run / "wandb_id").read_text()

    result = train(tiny(*overrides), name="driver", storage=tmp_path, train_loop=record_start_checkpoint)
    assert (run / "attempts").read_text().split() == [latest]
    assert result.metrics["step"] == 40 and result.metrics["images_seen"] == 40 * 16 * 2
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl")]
    assert steps == list(range(5, 45, 5)), "metrics must continue the run, once per logged step"
    assert (run / "wandb_id").read_text() == wandb_id
    assert (run / "generator.safetensors").is_file()
