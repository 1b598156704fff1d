"""Checkpoints through the real loop (in-process, DeepSpeed, world size 1): exact round trip,
exact resume, and refusal of incomplete checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from distgan import checkpoint, engines
from distgan.config import Config
from distgan.worker import RunInfo, Trainer
from sessions import LocalSession


def small_config(stage: int = 0, steps: int = 4) -> Config:
    cfg = Config()
    cfg.train.steps = steps
    cfg.train.batch_size = 16
    cfg.train.checkpoint_every = 2
    cfg.train.log_every = 2
    cfg.train.sample_every = 2
    cfg.model.latent_dim = 8
    cfg.model.g_width = cfg.model.d_width = 8
    cfg.data.resolution = 8
    cfg.deepspeed.zero_stage = stage
    cfg.tracking.wandb = False
    cfg.ema.half_life_kimg = 0.05  # makes the EMA differ visibly from G in a few steps
    return cfg


def make_trainer(cfg, tmp_path, run: str, resume_from=None) -> tuple[Trainer, LocalSession]:
    run_dir = tmp_path / run
    run_dir.mkdir(exist_ok=True)
    session = LocalSession(tmp_path / f"{run}-store", resume_from)
    return Trainer(cfg, RunInfo(run_dir, run, "id"), session), session


def params(engine) -> list[torch.Tensor]:
    with engines.whole_parameters(engine) as m:
        return [p.detach().clone() for p in m.parameters()]


def optimizer_tensors(engine) -> list[torch.Tensor]:
    state = engine.optimizer.state_dict()
    found = []

    def walk(obj):
        if isinstance(obj, torch.Tensor):
            found.append(obj.detach().clone())
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                walk(obj[k])
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(state)
    return found


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_round_trip_restores_everything_exactly(process_group, tmp_path, stage):
    cfg = small_config(stage, steps=2)
    trainer, session = make_trainer(cfg, tmp_path, "a")
    trainer.run()
    saved = session.checkpoints[-1]
    assert saved.name == "checkpoint_000002"

    fresh, _ = make_trainer(cfg, tmp_path, "b", resume_from=saved)
    assert not same(params(fresh.engine_g), params(trainer.engine_g))  # a fresh init differs
    fresh.restore()
    assert fresh.state.step == 2 and fresh.state.images_seen == trainer.state.images_seen
    assert same(params(fresh.engine_g), params(trainer.engine_g))
    assert same(params(fresh.engine_d), params(trainer.engine_d))
    assert same(optimizer_tensors(fresh.engine_g), optimizer_tensors(trainer.engine_g))
    assert same(optimizer_tensors(fresh.engine_d), optimizer_tensors(trainer.engine_d))
    assert same(list(fresh.ema.module.state_dict().values()), list(trainer.ema.module.state_dict().values()))
    assert fresh.sampler.state_dict() == trainer.sampler.state_dict()
    assert torch.equal(fresh.z_gen.get_state(), trainer.z_gen.get_state())


def test_resume_reproduces_an_uninterrupted_run(process_group, tmp_path):
    cfg = small_config(0, steps=4)
    straight, _ = make_trainer(cfg, tmp_path, "straight")
    straight.run()

    first, session = make_trainer(small_config(0, steps=2), tmp_path, "first")
    first.run()
    resumed, _ = make_trainer(cfg, tmp_path, "resumed", resume_from=session.checkpoints[-1])
    resumed.run()
    assert resumed.state.step == 4
    assert same(params(resumed.engine_g), params(straight.engine_g))
    assert same(params(resumed.engine_d), params(straight.engine_d))
    assert same(list(resumed.ema.module.parameters()), list(straight.ema.module.parameters()))


def test_incomplete_checkpoints_are_refused_with_the_file_named(process_group, tmp_path):
    trainer, session = make_trainer(small_config(0, steps=2), tmp_path, "a")
    trainer.run()
    ckpt = session.checkpoints[-1]
    assert checkpoint.verify(ckpt).step == 2

    # A checkpoint is complete when every rank that wrote it (train_state.json's world_size) finished.
    state_file = ckpt / "train_state.json"
    saved = state_file.read_text()
    claim = json.dumps({**json.loads(saved), "world_size": 2})
    state_file.write_text(claim.ljust(len(saved)))  # the size rank 0's manifest recorded
    with pytest.raises(checkpoint.CheckpointError, match="manifest_rank1.json is missing: rank 1 never finished"):
        checkpoint.verify(ckpt)
    state_file.write_text(saved)

    manifest = json.loads((ckpt / "manifest_rank0.json").read_text())
    shard = next(rel for rel in manifest["files"] if rel.startswith("G/"))
    path = ckpt / shard
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(checkpoint.CheckpointError, match=f"{path.name} has .* bytes, expected .*truncated"):
        checkpoint.verify(ckpt)

    (ckpt / "manifest_rank0.json").unlink()
    with pytest.raises(checkpoint.CheckpointError, match="manifest_rank0.json is missing"):
        checkpoint.verify(ckpt)
