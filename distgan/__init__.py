"""distgan: distributed GAN training on Ray Train with DeepSpeed engines for G and D.

The Python API mirrors the CLI::

    import distgan
    cfg = distgan.load_config("configs/dcgan_digits.yaml", ["train.steps=200"])
    result = distgan.train(cfg, name="digits")
    generator, meta = distgan.load_generator(result.run_dir)
    scores, info = distgan.evaluate_generator(result.run_dir, ["eval.n=5000"])
    sweep = distgan.tune("configs/tune_dcgan_digits_asha.yaml", name="lr-width")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from distgan.config import Config, ConfigError, load_config
from distgan.export import load_generator

if TYPE_CHECKING:
    from distgan.launch.sweep_results import SweepResult
    from distgan.launch.train import TrainResult

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "evaluate_generator", "load_config", "load_generator", "train", "tune",
           "__version__"]


def train(config: Union[Config, dict, str, Path, None] = None, name: Optional[str] = None,
          address: Optional[str] = None, storage: Union[str, Path, None] = None,
          progress: bool = True) -> "TrainResult":
    """Run distributed training; ``config`` is a Config, a plain dict, a YAML path or None (defaults)."""
    from distgan.launch.loopback import keep_embedded_ray_on_loopback

    keep_embedded_ray_on_loopback(address)
    from distgan.launch.train import train as _train

    return _train(_as_config(config), name=name, address=address, storage=storage, progress=progress)


def tune(config: Union[Config, dict, str, Path, None] = None, name: Optional[str] = None,
         address: Optional[str] = None, storage: Union[str, Path, None] = None,
         resume: bool = False) -> "SweepResult":
    """Run the sweep of ``config.tune`` (every trial a distributed run); ``resume`` continues sweep ``name``."""
    from distgan.launch.loopback import keep_embedded_ray_on_loopback

    keep_embedded_ray_on_loopback(address)
    from distgan.launch.tune import run_tune

    return run_tune(None if resume and config is None else _as_config(config), name=name, address=address,
                    storage=storage, resume=resume)


def _as_config(config: Union[Config, dict, str, Path, None]) -> Config:
    if config is None:
        return Config.from_dict({})
    if isinstance(config, dict):
        return Config.from_dict(config)
    if isinstance(config, (str, Path)):
        return load_config(config)
    return config


def evaluate_generator(source: Union[str, Path], overrides: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """FID/KID/precision-recall (and class accuracy) of a run, checkpoint or generator file, in this process.

    ``overrides`` are ``eval.*`` or ``data.*`` ``KEY=VALUE`` strings; returns (scores, what was evaluated).
    """
    from distgan.evaluate import evaluate_generator as _evaluate

    return _evaluate(source, overrides)
