"""``distgan evaluate``: a run's, checkpoint's or exported generator's scores, in this process (no Ray).

The task the generator was trained for (its ``generator.json``) evaluates it,
with the run's config (``config.yaml`` beside it, else the data set the
description names) and the ``eval.*``/``data.*`` overrides given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from distgan.checks import validate
from distgan.config import Config, ConfigError, load_config, parse_override, set_dotted
from distgan.persist.export import find_generator, load_generator
from distgan.persist.storage import is_uri
from distgan.tasks import task_of

Scores = dict[str, float]


def config_for(source: Path, meta: dict, overrides: Sequence[str] = ()) -> Config:
    """The run's config (its ``config.yaml``), else one rebuilt from the generator's description."""
    weights_dir = source if source.is_dir() else source.parent
    for candidate in (weights_dir, weights_dir.parent):
        if (candidate / "config.yaml").is_file():
            return validate(load_config(candidate / "config.yaml", tuple(overrides)))
    if "data_config" not in meta:
        raise ConfigError(f"{source}: no config.yaml beside it and its generator.json does not name the data "
                          f"set; evaluate the run directory instead")
    raw = {"model": meta["model"], "data": meta["data_config"]}
    for item in overrides:
        set_dotted(raw, *parse_override(item))
    return validate(Config.from_dict(raw))


def evaluate_generator(source, overrides: Sequence[str] = ()) -> tuple[Scores, dict]:
    """Evaluate a run directory, checkpoint or ``generator.safetensors`` (or its URI) in this process.

    ``overrides`` are ``eval.*`` (or ``data.*``) ``KEY=VALUE`` strings; returns (scores, what was evaluated).
    """
    check_overrides(overrides)
    # A generator in a bucket is evaluated from its downloaded copy, which holds the run's config.yaml.
    source = find_generator(source).parent if is_uri(source) else Path(source)
    module, meta = load_generator(source)
    cfg = config_for(source, meta, overrides)
    return task_of(meta).evaluate_offline(source, module, meta, cfg)


def check_overrides(overrides: Sequence[str]) -> None:
    """Only ``eval.*`` and ``data.*`` keys mean anything to an evaluation (the model and its training are the
    generator's own): another key is refused by name rather than ignored."""
    for item in overrides:
        key, _ = parse_override(item)
        if not key.startswith(("eval.", "data.")):
            raise ConfigError(f"{item!r}: evaluate takes eval.* and data.* overrides (what is scored, on which "
                              f"data); {key.split('.')[0]}.* belongs to the run that trained the generator")


def format_table(scores: Scores) -> str:
    width = max(len(k) for k in scores)
    return "\n".join(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                     for k, v in scores.items())
