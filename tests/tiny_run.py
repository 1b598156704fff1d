"""The smallest real training runs: a few steps of a narrow DCGAN (or StyleGAN2) on 16 px digits, for end-to-end
tests."""

from __future__ import annotations

from distgan.config import Config
from distgan import load_config

OVERRIDES = ("train.steps=6", "train.batch_size=16", "train.log_every=2", "train.checkpoint_every=3",
             "train.sample_every=3", "train.keep_checkpoints=2", "model.g_width=16", "model.d_width=16",
             "model.latent_dim=16", "data.resolution=16",
             "eval.n=200", "eval.kid_subsets=10", "eval.kid_subset_size=100")


def tiny(*extra: str) -> Config:
    return load_config(None, OVERRIDES + extra)

# A narrow StyleGAN2 whose every phase runs within a few steps: lazy R1 and path length every 2nd step, ADA
# adjusting p (from 0.2, so that it can move either way) every D step and fast enough to move it, G_ema.
STYLEGAN2 = ("model.family=stylegan2", "model.stylegan2.w_dim=16", "model.stylegan2.channel_base=128",
             "model.stylegan2.channel_max=16", "loss.type=nonsaturating",
             "loss.d_reg={type: r1, weight: 0.01, interval: 2}",
             "loss.g_reg={type: path_length, weight: 2.0, interval: 2}", "augment.ada.enabled=true",
             "augment.ada.p=0.2", "augment.ada.interval=1", "augment.ada.ada_kimg=0.1", "ema.enabled=true")
