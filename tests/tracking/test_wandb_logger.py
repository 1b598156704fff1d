"""What a run tells W&B beyond its metrics (offline, in-process; the record read back with W&B's own reader):
its job type and tags, summaries that keep each score's best value, not its last, and a log on disk for an
attempt that never finishes (killed outright, or stopped by a preemption notice)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from distgan.config import TrackingConfig
from distgan.tracking.wandb_logger import FLUSH_S, WandbLogger, flush_setting
from wandb_log import logged_steps, read_log, records


def test_a_trial_is_typed_tagged_and_keeps_its_best_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(TrackingConfig(), tmp_path, "trial0", "trial0", {"model": {"family": "dcgan"}},
                         group="lr-sweep", tags=["dcgan", "generation", "lr-sweep"],
                         summaries={"fid": "min", "psnr": "max"})
    for step, fid, psnr in ((10, 50.0, 20.0), (20, 30.0, 24.0), (30, 40.0, 22.0)):
        logger.log({"step": step, "fid": fid, "psnr": psnr})
    logger.finish()
    found = records(tmp_path)
    run = next(r.run for r in found if r.HasField("run"))
    assert run.job_type == "sweep-trial" and run.run_group == "lr-sweep"
    assert list(run.tags) == ["dcgan", "generation", "lr-sweep"]
    summary = {}
    for record in found:
        if record.HasField("summary"):
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    assert summary["fid"] == {"min": 30.0} and summary["psnr"] == {"max": 24.0}, summary


def test_a_plain_run_is_a_train_job(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(TrackingConfig(), tmp_path, "run0", "run0", {}, tags=["srresnet", "super_resolution"])
    logger.log({"step": 1, "loss_g": 1.0})
    logger.finish()
    run = next(r.run for r in records(tmp_path) if r.HasField("run"))
    assert run.job_type == "train" and list(run.tags) == ["srresnet", "super_resolution"] and not run.run_group


def test_the_loop_tags_its_run_and_defines_every_score_s_summary(process_group, tmp_path, monkeypatch):
    from local_runs import make_trainer, small_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = small_config(steps=2)
    cfg.tracking.wandb = True
    trainer, _ = make_trainer(cfg, tmp_path, "tagged")
    trainer.run()
    found = records(tmp_path / "tagged")
    run = next(r.run for r in found if r.HasField("run"))
    assert run.job_type == "train" and list(run.tags) == ["dcgan", "generation"]
    defined = {r.metric.name: r.metric.summary for r in found if r.HasField("metric") and r.metric.name}
    assert defined["fid"].min and defined["kid"].min and defined["psnr"].max and defined["ssim"].max


def test_a_log_read_while_it_is_written_gives_the_records_whole_so_far(tmp_path, monkeypatch):
    """The tests read logs W&B's service may still be writing (``records`` waits for the exit record): a log
    cut at any byte reads as the whole records before the cut, never a half-written one."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(TrackingConfig(), tmp_path, "cut", "cut", {"model": {"family": "dcgan"}})
    for step in range(40):
        logger.log({"step": step, "loss_g": float(step), "note": "x" * 1500})  # records across 32 KiB blocks
    logger.finish()
    whole = [r.SerializeToString() for r in records(tmp_path)]
    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert len(data) > 2 * 32768
    cut_file = tmp_path / "cut.wandb"
    lengths = set()
    for cut in sorted(set(range(7, len(data), 997)) | {32768 + d for d in range(-8, 9)} | {len(data)}):
        cut_file.write_bytes(data[:cut])
        found = [r.SerializeToString() for r in read_log(cut_file)]
        assert found == whole[:len(found)], cut
        lengths.add(len(found))
    assert max(lengths) == len(whole) and len(lengths) > 10


KILLED = """
import os, signal, sys, time
from pathlib import Path
from distgan.config import TrackingConfig
from distgan.tracking.wandb_logger import FLUSH_S, WandbLogger, flush_setting
logger = WandbLogger(TrackingConfig(), Path(sys.argv[1]), "killed", "killed", {})
for step in range(20):
    logger.log({"step": step, "loss_g": float(step)})
time.sleep(3 * FLUSH_S)
os.kill(os.getpid(), signal.SIGKILL)  # as Ray kills the workers of a trial Tune stops
"""


def test_a_process_killed_before_finish_leaves_what_it_logged_before_the_last_flush(tmp_path):
    # W&B's default flush interval (15 s) left 0 records here: the rows were still in its service's memory.
    env = {**os.environ, "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], env=env, capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    found = read_log(path)
    assert logged_steps(found) == list(range(20))
    assert not any(r.HasField("exit") for r in found)  # it never finished: what is there came from the flushes


def test_an_attempt_stopped_by_a_preemption_notice_closes_its_run_as_failed(process_group, tmp_path, monkeypatch):
    from distgan.runtime import preemption
    from local_runs import make_trainer, small_config

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = small_config(steps=10)
    cfg.tracking.wandb = True
    trainer, session = make_trainer(cfg, tmp_path, "preempted")
    step, calls = trainer.gan.step, []

    def told_at_the_fifth(*args):
        calls.append(1)
        if len(calls) == 5:
            preemption.notify()  # what the SIGTERM handler does
        return step(*args)

    monkeypatch.setattr(trainer.gan, "step", told_at_the_fifth)
    with pytest.raises(preemption.Preempted):
        trainer.run()
    assert [p.name for p in session.checkpoints] == ["checkpoint_000002", "checkpoint_000004", "checkpoint_000005"]
    found = records(tmp_path / "preempted")
    assert found[-1].exit.exit_code == 1  # W&B marks the run failed; the next attempt resumes it
    assert logged_steps(found) == [2, 4]


def test_the_flush_setting_is_passed_only_to_a_w_and_b_that_has_it():
    import wandb

    # The pinned W&B has it (the test above shows what it does); an older one, whose settings refuse unknown
    # keys, gets nothing rather than failing every run.
    assert flush_setting(wandb.Settings) == {"x_transaction_log_flush_interval": FLUSH_S}

    class OlderSettings:
        model_fields = {"console": None, "silent": None}

    assert flush_setting(OlderSettings) == {}
