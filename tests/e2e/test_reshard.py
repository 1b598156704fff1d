"""Resuming a run with another worker count (``distgan.persist.reshard``): the whole training state carries over.

A run is trained with one worker count, then resumed under the same name with another. Every rank's whole
parameters and Adam moments (assembled across the ZeRO partitions) are written by the test's worker
function when the first run saves its last checkpoint, and again right after the second run restores it:
they must be equal exactly, and the resumed run must train on to its last step.

- ZeRO-3, 2 workers -> 1: parameters and optimizer states are partitioned; rank 0 converts both engines'
  checkpoints to DeepSpeed universal checkpoints, which the single worker loads whole.
- ZeRO-2, 1 worker -> 2, a StyleGAN2 run kept in an S3 bucket (moto's server on 127.0.0.1 stands in for
  the cloud store): each rank downloads the checkpoint into its own directory and converts its own copy
  (ranks of a run under a URI may be on nodes that share no file system). Its lazy R1 and path-length
  phases run in both runs, and ADA's p and running sums and G_ema carry over too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distgan.persist import checkpoint
from distgan.launch.train import train
from distgan.persist.storage import Storage
from distgan.tracking.jsonl import read_metrics
from tiny_run import STYLEGAN2, tiny

pytestmark = pytest.mark.ray

FAST = ("eval.every=0", "tracking.wandb=false", "train.checkpoint_every=3", "train.sample_every=100")
FAMILY = {"dcgan": (), "stylegan2": STYLEGAN2}


def record_state_at_save_and_restore(loop_config: dict) -> None:
    """The production worker function, except that each rank assembles G's and D's whole state after the
    run's last checkpoint is saved (``saved.safetensors``) and after a restore (``restored.safetensors``);
    rank 0 writes them into the run directory."""
    from safetensors.torch import save_file

    from distgan.runtime import loop as worker
    from distgan.launch import session as session_mod
    from replica_checks import full_training_state

    run_dir = Path(loop_config["run_dir"])
    save_checkpoint, restore = worker.Trainer.save_checkpoint, worker.Trainer.restore

    def dump(trainer, name: str) -> None:
        state = {f"{net}.{key}": value for net, engine in (("g", trainer.engine_g), ("d", trainer.engine_d))
                 for key, value in full_training_state(engine).items()}
        if trainer.ema is not None:
            state.update({f"g_ema.{k}": v.float().clone() for k, v in trainer.ema.module.state_dict().items()})
        ada = getattr(trainer.gan, "ada", None)
        if ada is not None:  # collective, like the checkpoint that saves it
            state.update({f"ada.{k}": torch.as_tensor(v, dtype=torch.float64) for k, v in ada.state_dict().items()})
        if trainer.rank == 0:
            save_file(state, str(run_dir / name))

    def save_then_record(self, *args, **kwargs):
        out = save_checkpoint(self, *args, **kwargs)
        if self.state.step == self.cfg.train.steps:
            dump(self, f"saved_{self.world}.safetensors")
        return out

    def restore_then_record(self):
        restore(self)
        if self.state.step > 0:  # restored from a checkpoint (a fresh start has no optimizer state yet)
            dump(self, f"restored_{self.world}.safetensors")

    worker.Trainer.save_checkpoint = save_then_record
    worker.Trainer.restore = restore_then_record
    session_mod.train_fn(loop_config)


# ZeRO-0 (the default) holds no partitions and loads as it is at any width: the elastic run in test_cluster.py
# goes 2 -> 1 -> 2 workers on it.
@pytest.mark.parametrize("stage, before, after, where, family",
                         [(3, 2, 1, "directory", "dcgan"), (2, 1, 2, "s3", "stylegan2")])
def test_a_run_resumes_with_another_worker_count(local_ray, tmp_path, request, stage, before, after, where,
                                                 family):
    storage = request.getfixturevalue("s3_storage") if where == "s3" else tmp_path
    first = tiny(*FAST, *FAMILY[family], f"deepspeed.zero_stage={stage}", f"scaling.num_workers={before}",
                 "train.steps=3")
    train(first, name="rs", storage=storage, progress=False, train_loop=record_state_at_save_and_restore)
    second = tiny(*FAST, *FAMILY[family], f"deepspeed.zero_stage={stage}", f"scaling.num_workers={after}",
                  "train.steps=6")
    result = train(second, name="rs", storage=storage, progress=False, train_loop=record_state_at_save_and_restore)
    run = result.run_dir  # the run directory, or this machine's staging copy of a run in the bucket
    files = Storage.parse(storage).run("rs")

    saved = load_file(str(run / f"saved_{before}.safetensors"))
    restored = load_file(str(run / f"restored_{after}.safetensors"))
    assert saved.keys() == restored.keys() and any(k.endswith(".exp_avg_sq") for k in saved)
    differ = [k for k in saved if not torch.equal(saved[k], restored[k])]
    assert not differ, f"changed by resharding: {differ[:5]}"
    assert any(saved[k].abs().sum() > 0 for k in saved if k.endswith(".exp_avg")), "Adam never stepped"
    if family == "stylegan2":
        assert any(k.startswith("g_ema.") for k in saved) and "ada.signs" in saved
        assert saved["ada.p"].item() != pytest.approx(0.2), "ADA never moved p: its carry-over proves nothing"

    assert result.metrics["step"] == 6
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 3, 4, 6]  # 3: the first run's last step
    assert all(r["loss_d"] is not None and r["loss_g"] is not None for r in records)
    if family == "stylegan2":  # both lazy regularizers ran, in both runs
        for key in ("reg_g", "reg_d"):
            for run_steps in (range(1, 4), range(4, 7)):
                assert any(r.get(key) is not None for r in records if r["step"] in run_steps), (key, records)
    # Later checkpoints are ordinary ones of the new worker count; the conversion was removed once loaded.
    assert checkpoint.verify(files.child("checkpoint_000006")).world_size == after
    assert ".resharded" not in files.subdirs() and not (run / ".resharded").exists()
    if where == "s3":  # each rank converted its own download, in its own directory, gone after the restore
        assert not (run / ".checkpoints").exists() or not any((run / ".checkpoints").iterdir())
