"""A non-finite gradient on one of two Ray workers: both skip the step together, the run goes on, and the
replicas stay bit-identical; a run of such steps stops the run with ``NonFiniteError``'s message.

The fault is installed by the test's own worker function (``train(..., train_loop=...)`` of
``distgan.launch.train``), which wraps the production one: rank 1 turns the gradient of D's first
parameter into NaN in chosen backward passes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from distgan.persist import rundir
from distgan.launch.train import train
from distgan.persist.rundir import RunFailed
from distgan.tracking.jsonl import read_metrics
from tiny_run import tiny

pytestmark = pytest.mark.ray

FAST = ("eval.every=0", "tracking.wandb=false", "train.sample_every=6", "deepspeed.zero_stage=0")


def nan_once_on_rank1(loop_config: dict) -> None:
    run_with_nan_on_rank1(loop_config, [3])


def nan_always_on_rank1(loop_config: dict) -> None:
    run_with_nan_on_rank1(loop_config, "all")


def run_with_nan_on_rank1(loop_config: dict, which) -> None:
    """The production worker function, except that on rank 1 D's gradient is NaN in the backward passes
    ``which`` lists (1-based; "all" for every one), and that before exporting, every rank compares its G and
    D (parameters and buffers) with rank 0's and rank 0 writes the differences."""
    import itertools

    import ray.train
    import torch

    from distgan.runtime import loop as worker
    from distgan.launch import session as session_mod
    from distgan.tasks.generation.task import GenerationTask
    from replica_checks import flat, max_rank_difference

    run_dir = Path(loop_config["run_dir"])
    build_algorithm, export = GenerationTask.build_algorithm, worker.Trainer.export

    def build_with_fault(self, engine_g, engine_d, z_generator):
        if self.rank == 0:  # one line per attempt that got as far as building the GAN
            with (run_dir / "builds").open("a") as f:
                f.write("built\n")
        gan = build_algorithm(self, engine_g, engine_d, z_generator)
        backwards = itertools.count(1)

        def hook(grad):
            n = next(backwards)  # D's backward passes: G's phase runs D frozen, so it never gets here
            return torch.full_like(grad, float("nan")) if which == "all" or n in which else grad

        if self.rank == 1:
            next(engine_d.module.parameters()).register_hook(hook)
        return gan

    def compare_then_export(self):
        diffs = {net: max_rank_difference(flat(engine, buffers=True))
                 for net, engine in (("g", self.engine_g), ("d", self.engine_d))}
        if self.rank == 0:
            (run_dir / "replica_diff.json").write_text(json.dumps(diffs))
        export(self)

    if ray.train.get_context().get_world_size() == 2:
        GenerationTask.build_algorithm = build_with_fault
        worker.Trainer.export = compare_then_export
    session_mod.train_fn(loop_config)


def test_nan_on_one_rank_is_skipped_by_both(local_ray, tmp_path):
    result = train(tiny(*FAST), name="nan", storage=tmp_path, progress=False, train_loop=nan_once_on_rank1)
    assert result.metrics["step"] == 6
    records = read_metrics(result.run_dir / "metrics.jsonl")
    assert [(r["step"], r["skipped_d"], r["skipped_g"]) for r in records] == [(2, 0, 0), (4, 1, 0), (6, 1, 0)]
    assert all(r["loss_d"] is not None and r["loss_g"] is not None for r in records[2:])
    diffs = json.loads((result.run_dir / "replica_diff.json").read_text())
    assert diffs == {"g": 0.0, "d": 0.0}, "the replicas diverged around the skipped step"
    assert (result.run_dir / "generator.safetensors").is_file()


def test_consecutive_skips_fail_the_run_with_the_message_and_no_retries(local_ray, tmp_path):
    """Ray Train retries the failed group max_failures times; each retry finds the run's recorded failure and
    stops before building anything, instead of training up to the same divergence again."""
    cfg = tiny(*FAST, "train.max_consecutive_skips=2", "train.max_failures=2")
    started = time.monotonic()
    with pytest.raises(RunFailed) as info:
        train(cfg, name="diverged", storage=tmp_path, progress=False, train_loop=nan_always_on_rank1)
    message = str(info.value)
    assert message.startswith("run 'diverged' stopped: NonFiniteError: D skipped 2 consecutive optimizer steps, "
                              "at training step 2"), message
    assert "deepspeed.d.gradient_clipping" in message
    assert (tmp_path / "diverged" / "builds").read_text() == "built\n", "a retry trained again"
    print(f"diverged run stopped after {time.monotonic() - started:.1f} s, with 2 retries refused at start-up")
    # A new command is a new attempt (the cause may have been fixed): its workers are not stopped by the note.
    plan = rundir.check(tmp_path, "diverged", cfg)
    assert rundir.create(plan, cfg) and rundir.recorded_failure(tmp_path / "diverged") is None
