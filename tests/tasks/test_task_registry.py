"""Tasks behind one interface: the family picks the task, old generator descriptions still name theirs, and
the loop trains a task it has never heard of (one class and one registration, no edit elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from distgan import load_config
from distgan.config import ConfigError
from distgan.runtime.algorithm import GANAlgorithm
from distgan.runtime.loop import RunInfo, Trainer
from distgan.tasks import TASKS, task_for, task_of
from distgan.tasks.generation.task import GenerationTask
from distgan.tasks.super_resolution.task import SuperResolutionTask
from sessions import LocalSession


def test_the_family_names_the_task():
    assert task_for(load_config(None, ())) is GenerationTask
    assert task_for(load_config(None, ("model.family=srresnet", "data.name=photos", "data.channels=3",
                                       "data.resolution=64"))) is SuperResolutionTask


@pytest.mark.parametrize("meta, task", [({}, GenerationTask), ({"task": "generation"}, GenerationTask),
                                        ({"task": "sr"}, SuperResolutionTask),
                                        ({"task": "super_resolution"}, SuperResolutionTask)])
def test_descriptions_of_this_and_the_previous_layout_name_their_task(meta, task):
    """Generators exported before the task folders said ``sr`` for super-resolution and nothing for generation."""
    assert task_of(meta) is task


def test_an_unknown_task_in_a_description_is_named():
    with pytest.raises(ConfigError, match=r"generator.json names task 'inpainting'.*known: generation"):
        task_of({"task": "inpainting"})


class _ConstantStep(GANAlgorithm):
    """Pulls G's output toward the batch's mean image, no D: the smallest algorithm the loop can drive."""

    stat_names = ("loss_g",)

    def step(self, next_batch, batch_size: int) -> None:
        target = next_batch()
        loss = (self.engine_g(torch.zeros(batch_size, 1)) - target).pow(2).mean()
        self.backward("g", loss)
        self.optimizer_step("g")
        self.add_stat("loss_g", loss)
        self.steps_done += 1

    def samples_per_step(self, batch_size: int) -> int:
        return batch_size


class _Offset(nn.Module):
    latent_dim = 1

    def __init__(self):
        super().__init__()
        self.value = nn.Parameter(torch.zeros(2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.value.expand(z.shape[0], 2)


class MeanTask(GenerationTask):
    """A third task: generation's data and checks, its own networks, step, evaluation and samples."""

    name = "mean"

    @classmethod
    def made(cls, meta: dict) -> bool:
        return meta.get("task") == cls.name

    def build_generator(self) -> nn.Module:
        return _Offset()

    def build_discriminator(self):
        return None

    def build_algorithm(self, engine_g, engine_d, z_generator):
        return _ConstantStep(engine_g, engine_d, self.device, self.cfg.train.max_consecutive_skips)

    def next_batch(self) -> torch.Tensor:
        return super().next_batch()[0]

    def build_evaluator(self):
        mean = self.feed.dataset.x.mean(0)

        class Distance:
            def run(self, g: nn.Module) -> dict[str, float]:
                return {"distance": float((g(torch.zeros(1, 1))[0] - mean).norm())}

        return Distance()

    def render_samples(self, generator, evaluator=None):
        return None if self.rank else __import__("PIL.Image").Image.new("L", (2, 2))


def test_the_loop_trains_a_task_it_has_never_heard_of(process_group, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(TASKS._entries, MeanTask.name, MeanTask)  # registered for this test only
    cfg = load_config(None, ("model.family=mlp", "data.name=ring8", "data.num_samples=512", "train.steps=40",
                             "train.batch_size=64", "train.log_every=10", "train.checkpoint_every=40",
                             "train.sample_every=40", "eval.every=20", "tracking.wandb=false", "ema.enabled=false",
                             "optim.g.lr=0.05", "optim.g.betas=[0.9, 0.99]"))
    run = tmp_path / "run"
    run.mkdir()
    session = LocalSession(tmp_path / "store")
    Trainer(cfg, RunInfo(run, "mean", "mean"), session, MeanTask).run()
    distances = [r["distance"] for r in session.reports if "distance" in r]
    assert len(distances) == 2 and distances[-1] < distances[0]  # evaluated at steps 20 and 40, and learning
    assert (run / "samples" / "step_000040.png").is_file()
    meta = json.loads((run / "generator.json").read_text())  # exported under the task's own name
    assert meta["task"] == "mean" and meta["step"] == 40 and task_of(meta) is MeanTask
