"""Checkpoints through the real loop (in-process, DeepSpeed, world size 1): exact round trip,
exact resume, and refusal of incomplete checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from distgan.persist import checkpoint
from distgan.runtime import engines
from local_runs import make_trainer, optimizer_tensors, params, same, small_config


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
    assert fresh.task.data_state() == trainer.task.data_state()
    assert torch.equal(fresh.z_gen.get_state(), trainer.z_gen.get_state())
    if stage:  # DeepSpeed's own consolidation finds the tag by itself (no -t) and gives each net's weights
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        for net, engine in (("G", trainer.engine_g), ("D", trainer.engine_d)):
            consolidated = get_fp32_state_dict_from_zero_checkpoint(str(saved / net))
            with engines.whole_parameters(engine) as module:
                for name, param in module.named_parameters():
                    assert torch.equal(consolidated[name].float(), param.detach().float()), f"{net}: {name}"
        # And the script DeepSpeed copies beside it, as its docs say to run it: no flags.
        script = subprocess.run([sys.executable, str(saved / "G" / "zero_to_fp32.py"), str(saved / "G"),
                                 str(tmp_path / "g_fp32")], capture_output=True, text=True, timeout=300)
        assert script.returncode == 0, script.stderr[-2000:]
        assert list((tmp_path / "g_fp32").glob("*.bin")), sorted(p.name for p in (tmp_path / "g_fp32").iterdir())


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
