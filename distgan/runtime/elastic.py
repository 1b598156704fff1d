"""The config an attempt of an elastic run trains with at the width Ray Train gave it.

``scaling.elastic.batch`` (``distgan.config.scaling_schema``) is applied here, once per attempt, before the
data, engines and schedules are built from the config: ``keep_global`` gives each of w workers
``train.batch_size`` x max / w samples, so rank r still takes its contiguous share of the same global batch
(``distgan.data.sampler``) and nothing else changes; ``keep_per_worker`` scales the learning rates instead.
A run of fixed width trains with its config as it is.
"""

from __future__ import annotations

import dataclasses
import math

from distgan.config import Config

LR_FACTORS = {"linear": lambda share: share, "sqrt": math.sqrt, "none": lambda share: 1.0}
"""``scaling.elastic.lr_scaling``: the learning-rate factor as a function of w / max workers."""


def at_width(cfg: Config, world: int) -> Config:
    """``cfg`` as an attempt on ``world`` workers trains with it (``cfg`` itself when the run is not elastic)."""
    s = cfg.scaling
    if not s.is_elastic:
        return cfg
    if not s.min_workers <= world <= s.max_workers:
        raise ValueError(f"an elastic run of {list(s.num_workers)} workers was started on {world}")
    if s.elastic.batch == "keep_global":
        batch = cfg.train.batch_size * s.max_workers // world  # divides: checked with the config
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch))
    factor = LR_FACTORS[s.elastic.lr_scaling](world / s.max_workers)
    optim = dataclasses.replace(cfg.optim, g=dataclasses.replace(cfg.optim.g, lr=cfg.optim.g.lr * factor),
                                d=dataclasses.replace(cfg.optim.d, lr=cfg.optim.d.lr * factor))
    return dataclasses.replace(cfg, optim=optim)
