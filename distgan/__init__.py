"""distgan: distributed GAN training on Ray Train with DeepSpeed engines for G and D.

The Python API (``distgan.api``) mirrors the CLI::

    import distgan
    cfg = distgan.load_config("configs/dcgan_digits.yaml", ["train.steps=200"])
    result = distgan.train(cfg, name="digits")
    generator, meta = distgan.load_generator(result.run_dir)
    scores, info = distgan.evaluate_generator(result.run_dir, ["eval.n=5000"])
    onnx_file = distgan.export(result.run_dir, format="onnx").path
    served = distgan.serve(result.run_dir, route="/digits")  # Ray Serve, on 127.0.0.1:8000; served.stop()
    sweep = distgan.tune("configs/tune_dcgan_digits_asha.yaml", name="lr-width")
    page = distgan.report(sweep.sweep_dir)  # one self-contained HTML file

Names are resolved on first use, so ``import distgan`` (and the CLI's start) imports neither torch nor Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "config_from_dict", "evaluate_generator", "export", "load_config",
           "load_generator", "report", "serve", "train", "tune", "__version__"]

_FROM = {"Config": "distgan.config", "ConfigError": "distgan.config", "config_from_dict": "distgan.api",
         "evaluate_generator": "distgan.api", "export": "distgan.api", "load_config": "distgan.api",
         "load_generator": "distgan.api", "report": "distgan.api", "serve": "distgan.api", "train": "distgan.api",
         "tune": "distgan.api"}

if TYPE_CHECKING:
    from distgan.api import (config_from_dict, evaluate_generator, export, load_config, load_generator, report, serve,
                             train, tune)
    from distgan.config import Config, ConfigError


def __getattr__(name: str) -> Any:
    if name in _FROM:
        return getattr(importlib.import_module(_FROM[name]), name)
    raise AttributeError(f"module 'distgan' has no attribute {name!r}")
