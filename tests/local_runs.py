"""In-process runs of the real loop (one worker, real DeepSpeed engines, no Ray) that several test modules share:
small configs, a trainer over a ``LocalSession``, and snapshots of parameters and optimizer state."""

from __future__ import annotations

import torch

from distgan import load_config
from distgan.config import Config
from distgan.runtime import engines
from distgan.runtime.loop import RunInfo, Trainer
from distgan.tasks import build_trainer
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
    return build_trainer(cfg, RunInfo(run_dir, run, "id"), session), session


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


# -- super-resolution -------------------------------------------------------------

SR_BASE = ("model.family=srresnet", "model.scale=2", "model.blocks=1", "model.g_width=16", "model.g_norm=none",
        "data.name=photos", "data.channels=3", "data.resolution=32", "data.val_crop=64", "train.log_every=20",
        "train.sample_every=100", "eval.every=50", "optim.g.lr=2e-4", "optim.g.betas=[0.9, 0.99]",
        "tracking.wandb=false", "scaling.num_workers=1", "train.batch_size=8")
SR_GAN = ("loss.adversarial_weight=5e-3", "loss.type=ragan", "loss.pixel.weight=1e-2", "model.discriminator=vgg",
       "model.d_width=8", "model.d_norm=none", "optim.d.lr=2e-4")


def train_sr(run_dir, *overrides, resume_from=None) -> tuple[LocalSession, Trainer]:
    run_dir.mkdir(parents=True, exist_ok=True)
    session = LocalSession(run_dir, resume_from=resume_from)
    trainer = build_trainer(load_config(None, SR_BASE + overrides), RunInfo(run_dir, run_dir.name, "x"), session)
    trainer.run()
    return session, trainer


def sr_parameters(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for engine in (trainer.engine_g, trainer.engine_d)
            for p in engine.module.parameters()] + [p.detach().clone() for p in trainer.ema.module.parameters()]


# -- comparing two runs -------------------------------------------------------------

def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b)
    return max(float((x.float() - y.float()).abs().max()) for x, y in zip(a, b))


# Adam moves each weight by about lr (2e-4) per step whatever the gradient's size, so where a gradient is
# near zero, rounding can flip its sign: after 3 steps two layouts may differ by a few lr, never more.
LAYOUT_TOLERANCE = 1e-3
