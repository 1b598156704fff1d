"""Generation: G maps a latent z (and, for a conditional GAN, a class label) to a sample of the data set.

Every rank takes its own slice of every global batch from a data feed (the
small data set in memory, or an image folder streamed: ``distgan.data.open_feed``); the step is ``AlternatingGAN``'s phases; the
evaluator scores G_ema by FID, KID, precision/recall and class accuracy;
samples are a grid of fixed latents (cycling through the classes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from distgan import data, models
from distgan.config import Config, ConfigError
from distgan.gan import augment
from distgan.runtime.task import Task
from distgan.tasks.generation import evaluation
from distgan.tasks.generation.step import AlternatingGAN
from distgan.tracking.images import render_samples

NUM_FIXED_SAMPLES = 64


class GenerationTask(Task):
    name = "generation"
    default_metrics = evaluation.DEFAULT_METRICS
    commands = ("sample", "evaluate")

    @classmethod
    def made(cls, meta: dict) -> bool:
        return meta.get("task", cls.name) == cls.name  # earlier versions recorded no task for generation

    def __init__(self, cfg: Config, rank: int = 0, world: int = 1, device: torch.device = torch.device("cpu")):
        super().__init__(cfg, rank, world, device)
        self.class_names = data.class_names(cfg.data) if cfg.model.conditional else ()
        self.num_classes = len(self.class_names)
        # The grid's latents are the same at every sampling; conditional grids cycle through the classes.
        self.fixed_z = torch.randn(NUM_FIXED_SAMPLES, cfg.model.latent_dim,
                                   generator=torch.Generator().manual_seed(cfg.train.seed))
        self.fixed_labels = torch.arange(NUM_FIXED_SAMPLES) % self.num_classes if self.num_classes else None

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        check_config(cfg)

    # -- data ----------------------------------------------------------------------
    def setup_data(self, streamer: Optional[data.Streamer] = None) -> None:
        cfg = self.cfg
        self.streamer = streamer or data.ThreadStreamer()
        self.feed = data.open_feed(cfg.data, cfg.train.batch_size, self.rank, self.world, cfg.train.seed,
                                   self.streamer, self.device)
        self.data_shape = data.data_shape(cfg.data)

    def next_batch(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """This rank's next real batch and, for a conditional GAN, its labels."""
        x, labels = self.feed.next_batch()
        return x, labels if self.num_classes else None

    def data_state(self) -> dict:
        return self.feed.state_dict()

    def load_data_state(self, state: dict) -> None:
        self.feed.load_state_dict(state)

    def data_metrics(self) -> dict[str, float]:
        return {"data_wait_s": self.feed.pop_wait(), "data_skipped": float(len(self.feed.skipped))}

    # -- networks and the step ----------------------------------------------------------
    def build_generator(self) -> nn.Module:
        return models.build_generator(self.cfg.model, self.data_shape, self.num_classes)

    def build_discriminator(self) -> nn.Module:
        return models.build_discriminator(self.cfg.model, self.data_shape, self.num_classes)

    def build_algorithm(self, engine_g, engine_d, z_generator: torch.Generator) -> AlternatingGAN:
        return AlternatingGAN.from_config(self.cfg, engine_g, engine_d, self.device, z_generator,
                                          self.num_classes)

    # -- evaluation, samples, export -----------------------------------------------------
    def build_evaluator(self) -> evaluation.Evaluator:
        x, labels, kind = self.reference()
        return evaluation.Evaluator(self.cfg.eval, x, labels, kind, self.class_names, self.rank, self.world,
                                    self.device)

    def reference(self) -> tuple[torch.Tensor, Optional[torch.Tensor], str]:
        """The real samples evaluation compares with. Only rank 0 uses them (``Evaluator``), so when the data
        streams the others are spared decoding them."""
        cfg = self.cfg
        if self.rank != 0 and data.streams(cfg.data):
            return torch.zeros(0, *self.data_shape), None, "image"
        return data.reference_set(cfg.data, cfg.eval.reference_n, cfg.eval.seed, self.streamer, self.feed)

    def render_samples(self, generator: nn.Module, evaluator=None):
        if self.rank != 0:
            return None
        with torch.no_grad():
            z = self.fixed_z.to(self.device)
            samples = generator(z) if self.fixed_labels is None else generator(z, self.fixed_labels.to(self.device))
        return render_samples(samples.float().cpu())

    def export_metadata(self) -> dict:
        return {"data_shape": list(self.data_shape), "num_classes": self.num_classes,
                "class_names": list(self.class_names)}

    @classmethod
    def evaluate_offline(cls, source: Path, generator: nn.Module, meta: dict, cfg: Config):
        x, labels, kind = data.reference_set(cfg.data, cfg.eval.reference_n, cfg.eval.seed, data.ThreadStreamer())
        if tuple(x.shape[1:]) != tuple(meta["data_shape"]):
            raise ConfigError(f"{source}: the generator makes samples of shape {tuple(meta['data_shape'])}, but "
                              f"the data set gives {tuple(x.shape[1:])}; check data.* overrides")
        class_names = tuple(meta.get("class_names") or ())
        evaluator = evaluation.Evaluator(cfg.eval, x, labels, kind, class_names)
        scores = evaluator.run(generator)
        info = {"generator": str(source), "step": meta.get("step"), "n": cfg.eval.n, "seed": cfg.eval.seed,
                "features": evaluator.net.kind, "features_digest": evaluator.net.digest[:16]}
        return scores, info


def check_config(cfg: Config) -> None:
    """Data, model, loss, augmentation and evaluation settings of a generative run."""
    shape = data.data_shape(cfg.data)
    models.check(cfg, shape)
    if cfg.model.conditional and len(data.class_names(cfg.data)) < 2:
        source = f"data.path {cfg.data.path!r}" if cfg.data.path else f"data set {cfg.data.name!r}"
        hint = " (put its images in one sub-folder per class)" if cfg.data.path else ""
        raise ConfigError(f"model.conditional: {source} carries no class labels{hint}; "
                          f"set model.conditional=false or use labelled data")
    data.check(cfg.data)
    if cfg.loss.adversarial_weight <= 0:
        raise ConfigError(f"loss.adversarial_weight: a generative model learns only from D; it must be > 0 "
                          f"(0 is for the PSNR stage of super-resolution), got {cfg.loss.adversarial_weight}")
    names = augment.parse_policy(cfg.augment.policy)
    for name in names:
        augment.AUGMENTS.get(name, key="augment.policy")
    if names and len(shape) != 3:
        raise ConfigError(f"augment.policy: {cfg.augment.policy!r} transforms images, but the data set "
                          f"{cfg.data.name!r} holds points; leave augment.policy empty")
    if cfg.augment.ada.enabled and len(shape) != 3:
        raise ConfigError(f"augment.ada.enabled: ADA transforms images, but the data set {cfg.data.name!r} holds "
                          f"points; set augment.ada.enabled=false")
    if cfg.loss.g_reg.type != "none" and cfg.model.family != "stylegan2":
        # The step checks the built generator too; this refuses before any worker starts.
        raise ConfigError(f"loss.g_reg.type: {cfg.loss.g_reg.type} differentiates the image with respect to the "
                          f"styles w, which model.family={cfg.model.family!r} does not have; use "
                          f"model.family=stylegan2 or loss.g_reg.type=none")
    evaluation.check_config(cfg, shape)
