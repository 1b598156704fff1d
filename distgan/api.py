"""The Python API; the CLI (``distgan.cli``) is a thin face over it, taking the same typed config.

Every entry point checks the whole config (``distgan.checks.validate``) on this
machine before Ray starts, including a Config built or changed in Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

from distgan.config import Config, ConfigError
from distgan.config import load_config as _load_raw

if TYPE_CHECKING:
    from distgan.deploy.export import ExportResult
    from distgan.persist.catalog import Entry
    from distgan.launch.sweep_results import SweepResult
    from distgan.launch.serve import Served
    from distgan.launch.train import TrainResult

ConfigLike = Union[Config, dict, str, Path, None]


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> Config:
    """YAML file (or the built-in defaults) + ``KEY=VALUE`` overrides -> a Config checked in full."""
    cfg = _load_raw(path, tuple(overrides))  # keys, types and ranges first: a typo fails before torch loads
    from distgan.checks import validate  # imports torch and the registries

    return validate(cfg)


def config_from_dict(raw: dict) -> Config:
    """A nested plain dict -> a Config checked in full."""
    cfg = Config.from_dict(raw)
    from distgan.checks import validate

    return validate(cfg)


def train(config: ConfigLike = None, name: Optional[str] = None, address: Optional[str] = None,
          storage: Union[str, Path, None] = None, progress: bool = True) -> "TrainResult":
    """Run distributed training; ``config`` is a Config, a plain dict, a YAML path or None (defaults)."""
    from distgan.launch.loopback import keep_embedded_ray_on_loopback

    keep_embedded_ray_on_loopback(address)
    from distgan.launch.train import train as _train

    return _train(as_config(config), name=name, address=address, storage=storage, progress=progress)


def tune(config: ConfigLike = None, name: Optional[str] = None, address: Optional[str] = None,
         storage: Union[str, Path, None] = None, resume: bool = False) -> "SweepResult":
    """Run the sweep of ``config.tune`` (every trial a distributed run); ``resume`` continues sweep ``name``."""
    from distgan.launch.loopback import keep_embedded_ray_on_loopback

    keep_embedded_ray_on_loopback(address)
    from distgan.launch.tune import run_tune

    return run_tune(None if resume and config is None else as_config(config), name=name, address=address,
                    storage=storage, resume=resume)


def as_config(config: ConfigLike) -> Config:
    """A Config from what the API accepts (the launchers check it in full)."""
    if config is None:
        return Config.from_dict({})
    if isinstance(config, dict):
        return Config.from_dict(config)
    if isinstance(config, (str, Path)):
        return _load_raw(config)
    if not isinstance(config, Config):
        raise ConfigError(f"config: expected a Config, a dict, a YAML path or None, got {type(config).__name__}")
    return config


def load_generator(path: Union[str, Path]):
    """``(generator module in eval mode on CPU, its generator.json)`` of a run, checkpoint or weights file."""
    from distgan.persist.export import load_generator as _load

    return _load(path)


def export(source: Union[str, Path], format: str = "onnx", out: Union[str, Path, None] = None,
           tolerance: Optional[float] = None) -> "ExportResult":
    """A run, checkpoint or generator (or its URI) as an ``onnx`` or ``torchscript`` file with a dynamic batch
    (and image size, for super-resolution), written only once its output matches PyTorch's within
    ``tolerance`` (default ``distgan.deploy.TOLERANCE``, 1e-4) at two batch sizes; a JSON description goes
    beside it. ``out`` defaults to the weights' name beside them. Needs the ``export`` extra for ONNX.

    Returns the paths, the measured max abs difference and the description; raises
    ``distgan.deploy.ExportCheckFailed`` (leaving no file) when the check fails.
    """
    from distgan.deploy.export import export_generator

    return export_generator(source, format=format, out=out, tolerance=tolerance)


def serve(source: Union[str, Path], address: Optional[str] = None, token: Optional[str] = None,
          **options) -> "Served":
    """``distgan serve``: the generator behind HTTP on Ray Serve (the cluster at ``address``, else an embedded
    Ray), returning once it answers. ``options`` are ``distgan.launch.serve.ServeOptions`` fields (host, port,
    route, replicas, max_batch, ...), with ``limits`` a ``distgan.serving.ServeLimits``. Binding beyond
    loopback needs ``token``. Returns the URL and ``stop()``."""
    from distgan.launch.serve import ServeOptions, serve_generator

    return serve_generator(source, ServeOptions(**options), token, address)


def evaluate_generator(source: Union[str, Path], overrides: Sequence[str] = ()) -> tuple[dict, dict]:
    """Scores of a run, checkpoint or generator file in this process: FID/KID/precision-recall (and class
    accuracy) for generation, PSNR/SSIM for super-resolution.

    ``overrides`` are ``eval.*`` or ``data.*`` ``KEY=VALUE`` strings; returns (scores, what was evaluated).
    """
    from distgan.evaluate import evaluate_generator as _evaluate

    return _evaluate(source, overrides)


def report(source: Union[str, Path], out: Union[str, Path, None] = None) -> Path:
    """``distgan report``: the run or sweep directory ``source`` as one self-contained HTML file (default
    ``source/report.html``): curves against step and wall time, rule-based findings citing their numbers,
    the sample timeline, restarts and resizes, start-up breakdown and config; a sweep's trials overlaid.
    Returns the file's path."""
    # The tasks register the evaluation metrics: which logged keys are scores, and their directions.
    import distgan.tasks  # noqa: F401
    from distgan.tracking.report import write_report

    return write_report(source, out)


def list_runs(storage: Union[str, Path, None] = None) -> list["Entry"]:
    """``distgan ls``: the runs and sweeps under ``storage`` (default ``./runs``, as ``train`` uses), each with its
    task and family, status (running, finished, failed, stopped), step, best evaluation score, newest
    checkpoint and wall time, read from the run directories alone (no Ray). A run or sweep directory lists
    itself or its trials."""
    # The tasks register the evaluation metrics, and with them the direction each score improves in.
    import distgan.tasks  # noqa: F401
    from distgan.metrics.registry import objectives
    from distgan.persist.catalog import DEFAULT_STORAGE, list_storage

    directions = {score: direction for score, (_, direction) in objectives().items()}
    return list_storage(str(storage or DEFAULT_STORAGE), directions)
