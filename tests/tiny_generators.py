"""Tiny generators of every registered family, exported as training exports them (no training, no Ray)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from distgan import models
from distgan.config import ModelConfig
from distgan.persist.export import save_generator


def is_sr(family: str) -> bool:
    return models.MODELS.get(family).task == "super_resolution"


# Every registered family, and each generation family conditional too: a new family joins by registering.
CASES = [(f, False) for f in models.MODELS.names()] + [(f, True) for f in models.MODELS.names() if not is_sr(f)]


# Families whose width is set in their own section: narrow there too, where the section exists.
TINY_SECTIONS = {"stylegan2": dict(channel_base=128, channel_max=16, w_dim=16, mapping_layers=2)}


def save_tiny(directory: Path, family: str, conditional: bool = False, seed: int = 0, **extra) -> Path:
    """A tiny G of ``family`` exported as training exports it (generator.safetensors + generator.json)."""
    cfg = ModelConfig(family=family, latent_dim=8, g_width=8, d_width=8, blocks=1, growth=4, scale=2,
                      conditional=conditional, embed_dim=4)
    for section, narrow in TINY_SECTIONS.items():
        if hasattr(cfg, section):
            cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **narrow)})
    shape = (3, 32, 32) if is_sr(family) else (1, 16, 16)
    classes = 3 if conditional else 0
    torch.manual_seed(seed)
    g = models.build_generator(cfg, shape, classes).eval()
    task = models.MODELS.get(family).task
    save_generator(directory, g, {"model": dataclasses.asdict(cfg), "data_shape": list(shape), "num_classes": classes,
                                  "class_names": [str(i) for i in range(classes)], "task": task, "step": 3,
                                  **({"scale": 2} if is_sr(family) else {}), **extra})
    return directory
