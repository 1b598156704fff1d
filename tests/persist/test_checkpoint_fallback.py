"""Resuming from a refused checkpoint (in-process, DeepSpeed, world size 1): the loader names the faulty
file and falls back to the newest complete checkpoint before it, never to a fresh start. Also the driver's
cheap look before a resume (``rundir``)."""

from __future__ import annotations

import json
import logging
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distgan.persist import checkpoint
from distgan.persist import rundir
from distgan.config import ConfigError
from local_runs import make_trainer, params, same, small_config


@pytest.fixture(scope="module")
def straight(process_group, tmp_path_factory):
    """An uninterrupted 6-step run with checkpoints at 2, 4 and 6; returns (its trainer, its store)."""
    tmp = tmp_path_factory.mktemp("straight")
    trainer, session = make_trainer(small_config(0, steps=6), tmp, "straight")
    trainer.run()
    assert [p.name for p in session.checkpoints] == ["checkpoint_000002", "checkpoint_000004", "checkpoint_000006"]
    return trainer, session.store


@pytest.fixture
def store(straight, tmp_path) -> Path:
    """A copy of the straight run's checkpoints without the last, as if Ray had committed up to step 4."""
    copy = tmp_path / "store"
    shutil.copytree(straight[1], copy)
    shutil.rmtree(copy / "checkpoint_000006")
    return copy


def shard(ckpt: Path) -> Path:
    return ckpt / "G" / "state" / "mp_rank_00_model_states.pt"


def truncate(ckpt: Path) -> Path:
    path = shard(ckpt)
    path.write_bytes(path.read_bytes()[:-100])
    return path


def drop_manifest(ckpt: Path) -> Path:
    (ckpt / "manifest_rank0.json").unlink()
    return ckpt / "manifest_rank0.json"


def drop_file(ckpt: Path) -> Path:
    (ckpt / "rng_rank0.safetensors").unlink()
    return ckpt / "rng_rank0.safetensors"


def garbage_same_size(ckpt: Path) -> Path:
    """Random-looking bytes of the recorded size: the manifest's sizes cannot tell."""
    path = shard(ckpt)
    size = path.stat().st_size
    path.write_bytes(bytes((i * 131 + 7) % 251 for i in range(size)))
    return path


def garbage_in_pickle(ckpt: Path) -> Path:
    """Garbage inside the archive's pickle with the zip structure intact: only DeepSpeed's load can tell."""
    path = shard(ckpt)
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
    data = bytearray(path.read_bytes())
    header = info.header_offset  # the local header's name and extra lengths (torch pads the extra field)
    name_len, extra_len = (int.from_bytes(data[header + i:header + i + 2], "little") for i in (26, 28))
    start = header + 30 + name_len + extra_len  # the member's first byte
    data[start:start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return path


FAULTS = {"truncated shard": (truncate, "truncated"),
          "missing manifest": (drop_manifest, "manifest_rank0.json is missing"),
          "missing file": (drop_file, "is missing"),
          "garbage of the right size": (garbage_same_size, "not a readable"),
          "garbage in the pickle": (garbage_in_pickle, "is corrupt")}


@pytest.mark.parametrize("fault", FAULTS)
def test_refused_checkpoint_falls_back_to_the_previous_complete_one(store, tmp_path, caplog, fault):
    corrupt, says = FAULTS[fault]
    bad = corrupt(store / "checkpoint_000004")
    trainer, _ = make_trainer(small_config(0, steps=6), tmp_path, "resumed", resume_from=store / "checkpoint_000004")
    with caplog.at_level(logging.WARNING, logger="distgan"):
        trainer.restore()
    assert trainer.state.step == 2
    assert trainer.checkpoint_floor == 4
    expected = load_file(str(store / "checkpoint_000002" / "generator.safetensors"))
    restored = trainer.ema.module.state_dict()
    assert restored.keys() == expected.keys() and all(torch.equal(restored[k], expected[k]) for k in expected)
    message = caplog.text
    assert str(bad) in message and says in message, message
    assert "resuming from" in message and "checkpoint_000002" in message


def test_after_a_fallback_the_run_ends_as_an_uninterrupted_one(straight, store, tmp_path):
    """Steps 3-6 are trained again from checkpoint 2; step 4 is not checkpointed (Ray still tracks the refused
    checkpoint_000004), step 6 is; the parameters equal the straight run's exactly."""
    truncate(store / "checkpoint_000004")
    trainer, session = make_trainer(small_config(0, steps=6), tmp_path, "resumed",
                                    resume_from=store / "checkpoint_000004")
    trainer.run()
    assert trainer.state.step == 6
    assert [p.name for p in session.checkpoints] == ["checkpoint_000006"]
    assert [r["step"] for r in session.reports] == [4, 6]
    reference = straight[0]
    assert same(params(trainer.engine_g), params(reference.engine_g))
    assert same(params(trainer.engine_d), params(reference.engine_d))
    assert same(list(trainer.ema.module.parameters()), list(reference.ema.module.parameters()))


def test_no_complete_checkpoint_is_an_error_listing_each(store, tmp_path):
    truncate(store / "checkpoint_000004")
    drop_manifest(store / "checkpoint_000002")
    trainer, _ = make_trainer(small_config(0, steps=6), tmp_path, "resumed", resume_from=store / "checkpoint_000004")
    with pytest.raises(checkpoint.CheckpointError, match="no complete checkpoint") as caught:
        trainer.restore()
    message = str(caught.value)
    assert str(shard(store / "checkpoint_000004")) in message and "truncated" in message
    assert "checkpoint_000002" in message and "manifest_rank0.json is missing" in message
    assert trainer.state.step == 0


# -- the driver's look before a resume (no tensors read) ---------------------------------------------------


def one_worker():
    cfg = small_config()
    cfg.scaling.num_workers = 1
    return cfg


def as_ray_run(store: Path, latest: str) -> Path:
    """Make ``store`` look like a run directory Ray resumes: a config and Ray's record of the latest checkpoint."""
    (store / "config.yaml").write_text("{}\n")
    kept = [{"checkpoint_dir_name": p.name, "metrics": {}} for p in sorted(store.glob("checkpoint_*"))]
    snapshot = {"latest_checkpoint_result": {"checkpoint_dir_name": latest, "metrics": {}}, "checkpoint_results": kept}
    (store / rundir.RAY_SNAPSHOT).write_text(json.dumps(snapshot))
    return store


def test_driver_names_a_refused_latest_checkpoint_and_the_fallback(store, caplog):
    run = as_ray_run(store, "checkpoint_000004")
    bad = truncate(run / "checkpoint_000004")
    with caplog.at_level(logging.WARNING, logger="distgan"):
        rundir.check_resume(run, "r", one_worker())
    assert str(bad) in caplog.text and "truncated" in caplog.text
    assert "resuming from checkpoint_000002 instead" in caplog.text


def test_driver_says_a_resume_at_another_worker_count_is_resharded(store, caplog):
    """Resharding itself needs the workers (tests/e2e/test_reshard.py); the driver says it will happen."""
    run = as_ray_run(store, "checkpoint_000004")
    cfg = one_worker()
    cfg.scaling.num_workers = 2
    with caplog.at_level(logging.WARNING, logger="distgan"):
        rundir.check_resume(run, "r", cfg)
    assert "checkpoint_000004 was written by 1 workers and this run has 2: it is resharded on resume" in caplog.text


def test_driver_refuses_a_resume_that_cannot_work(store):
    run = as_ray_run(store, "checkpoint_000004")
    drop_manifest(run / "checkpoint_000004")
    drop_file(run / "checkpoint_000002")
    with pytest.raises(ConfigError, match=r"cannot be resumed: no complete checkpoint") as caught:
        rundir.check_resume(run, "r", one_worker())
    message = str(caught.value)
    assert "manifest_rank0.json is missing" in message and "rng_rank0.safetensors is missing" in message


def test_driver_leaves_the_run_directory_untouched_when_it_refuses(store, tmp_path):
    run = as_ray_run(store, "checkpoint_000004")
    drop_manifest(run / "checkpoint_000004")
    drop_manifest(run / "checkpoint_000002")
    before = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        rundir.prepare(run.parent, run.name, one_worker())
    assert (run / "config.yaml").read_text() == before and not (run / "wandb_id").exists()


def test_driver_says_which_checkpoint_ray_recorded_was_removed(store):
    run = as_ray_run(store, "checkpoint_000004")
    shutil.rmtree(run / "checkpoint_000004")
    with pytest.raises(ConfigError, match=r"checkpoint_000004 in .* was removed.*an empty directory will do"):
        rundir.check_resume(run, "r", one_worker())
    (run / "checkpoint_000004").mkdir()
    rundir.check_resume(run, "r", one_worker())  # refused with its missing train_state.json named; 2 resumes
