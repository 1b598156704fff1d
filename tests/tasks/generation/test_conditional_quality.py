"""``configs/cgan_digits.yaml`` draws the classes it is asked for, by an independent classifier's judgement.

The shipped config on one in-process worker (the Ray path is proven in
tests/e2e) for a third of its steps; an RBF SVM trained on real digits must
assign at least 90% of each class's samples to the requested class. The
evaluation during training (every 125 steps) must agree that the requested
classes are drawn, end below where it started, and put the trained G far
closer to the data than the same G untrained, scored by the same evaluator.
(Between evaluations FID may wobble: on some CPUs it rises once on the way.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from distgan import load_config
from distgan.persist.export import generate, load_generator
from distgan.metrics.digits import DigitClassifier, requested_class_accuracy
from distgan.tracking.jsonl import read_metrics
from distgan.runtime.loop import RunInfo
from distgan.tasks import build_trainer
from distgan.tasks.generation.task import GenerationTask
from sessions import LocalSession

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "cgan_digits.yaml"
STEPS = 500


def test_cgan_digits_draws_the_requested_classes(process_group, tmp_path):
    cfg = load_config(CONFIG, (f"train.steps={STEPS}", "scaling.num_workers=1", "tracking.wandb=false",
                               f"train.checkpoint_every={STEPS}", f"train.sample_every={STEPS}",
                               "eval.every=125", "eval.metrics=fid,class_acc"))
    run = tmp_path / "cgan"
    run.mkdir()
    build_trainer(cfg, RunInfo(run, "cgan", "cgan"), LocalSession(tmp_path / "store")).run()
    generator, _ = load_generator(run)
    requested = torch.arange(1000) % 10
    probs = DigitClassifier.fit().proba_images(generate(generator, 1000, seed=0, labels=requested))
    accuracy = requested_class_accuracy(probs, requested.numpy())
    assert min(accuracy) >= 0.9, [f"{k}: {a:.0%}" for k, a in enumerate(accuracy)]

    evaluations = [r for r in read_metrics(run / "metrics.jsonl") if "fid" in r]
    assert [r["step"] for r in evaluations] == [125, 250, 375, 500]
    fids = [r["fid"] for r in evaluations]
    untrained = untrained_fid(cfg)
    assert fids[-1] < fids[0] and fids[-1] < 0.5 * untrained, (fids, untrained)
    assert evaluations[-1]["class_acc"] >= 0.9


def untrained_fid(cfg) -> float:
    """FID of the run's G as initialised (same seed), by the evaluator the run used (same features, latents)."""
    task = GenerationTask(cfg)
    task.setup_data()
    torch.manual_seed(cfg.train.seed)
    return task.build_evaluator().run(task.build_generator().eval())["fid"]
