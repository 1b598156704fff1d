"""What a report is made of, read from a run or sweep directory alone (no Ray, no W&B).

A run directory holds ``config.yaml``, ``metrics.jsonl`` (one record per logged
step), ``history.jsonl`` (starts, restarts, resizes, preemptions), ``startup.json``
(the start-up breakdown) and ``samples/step_*.png``. A sweep directory holds
``sweep.yaml``, ``trials/*/`` (each a run directory) and, once it has ended,
``results.json`` (each trial's status and score) and ``best_config.yaml``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from distgan.config import ConfigError
from distgan.tracking import history
from distgan.tracking.jsonl import read_metrics
from distgan.tracking.startup import FILE as STARTUP_FILE

SAMPLE = re.compile(r"step_(\d+)\.png$")


@dataclass
class RunData:
    path: Path
    config: dict
    records: list[dict]
    events: list[dict]
    startup: dict
    samples: list[tuple[int, Path]] = field(default_factory=list)
    """``(step, PNG)`` of every saved sample grid, in step order."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def family(self) -> Optional[str]:
        return (self.config.get("model") or {}).get("family")

    @property
    def steps(self) -> Optional[int]:
        return (self.config.get("train") or {}).get("steps")


@dataclass
class SweepData:
    path: Path
    trials: dict[str, RunData]
    results: dict
    """``results.json``: metric, mode, one row per trial (status, step, score, values); empty while it runs."""
    best_config: str

    @property
    def name(self) -> str:
        return self.path.name


def is_sweep(path: Path) -> bool:
    return (path / "sweep.yaml").is_file()


def _yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def load_run(path: Path) -> RunData:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file, not a run or sweep directory: give the directory that holds "
                          f"metrics.jsonl (a run) or sweep.yaml (a sweep)")
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    log = path / "metrics.jsonl"
    if not log.is_file():
        raise FileNotFoundError(f"{path} has no metrics.jsonl: not a run directory, or the run has not logged yet")
    startup = {}
    if (path / STARTUP_FILE).is_file():
        startup = json.loads((path / STARTUP_FILE).read_text()).get("phases", {})
    samples = sorted((int(m.group(1)), p) for p in (path / "samples").glob("step_*.png")
                     if (m := SAMPLE.search(p.name)))
    return RunData(path, _yaml(path / "config.yaml"), read_metrics(log), history.read(path), startup, samples)


def load_sweep(path: Path) -> SweepData:
    path = Path(path)
    trials = {}
    for trial in sorted(p for p in (path / "trials").glob("*") if (p / "metrics.jsonl").is_file()):
        trials[trial.name] = load_run(trial)
    results = json.loads((path / "results.json").read_text()) if (path / "results.json").is_file() else {}
    best = (path / "best_config.yaml").read_text() if (path / "best_config.yaml").is_file() else ""
    return SweepData(path, trials, results, best)
