"""What a run tells W&B beyond its metrics (offline, in-process; the record read back with W&B's own reader):
its job type and tags, and summaries that keep each score's best value, not its last."""

from __future__ import annotations

import json
import time

from distgan.config import TrackingConfig
from distgan.tracking.wandb_logger import WandbLogger


BLOCK = 32768


def chunks(data: bytes) -> list[bytes]:
    """The records of W&B's transaction log: after a 7-byte file header, LevelDB's log format (32 KiB blocks;
    each chunk a 4-byte checksum, a 2-byte length, a type: 1 whole, 2-4 first, middle and last parts)."""
    pos, found, pending = 7, [], b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            found.append(chunk)
        elif kind in (2, 3):
            pending += chunk
        elif kind == 4:
            found.append(pending + chunk)
            pending = b""
    return found


def records(run_dir, wait_s: float = 60.0) -> list:
    """The run's records, once its log is whole. ``run.finish()`` returns before W&B's service has written
    the log out (measured: under load, an empty log just after it and all 15 records 3 s later); the service
    writes the ``exit`` record last, and flushes the rest at the latest when this process exits."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + wait_s
    while True:
        data = path.read_bytes()
        assert data.startswith(b":W&B"), "not a W&B transaction log"
        found = []
        for chunk in chunks(data):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            found.append(record)
        if (found and found[-1].HasField("exit")) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


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
