"""The smallest real training run: a few steps of a narrow DCGAN on 16 px digits, for end-to-end tests."""

from __future__ import annotations

from distgan.config import Config
from distgan import load_config

OVERRIDES = ("train.steps=6", "train.batch_size=16", "train.log_every=2", "train.checkpoint_every=3",
             "train.sample_every=3", "train.keep_checkpoints=2", "model.g_width=16", "model.d_width=16",
             "model.latent_dim=16", "data.resolution=16",
             "eval.n=200", "eval.kid_subsets=10", "eval.kid_subset_size=100")


def tiny(*extra: str) -> Config:
    return load_config(None, OVERRIDES + extra)
