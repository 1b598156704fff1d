"""The evaluation scores a served generator was exported with, for its health report."""

from __future__ import annotations

from pathlib import Path

from distgan.metrics.registry import objectives
from distgan.tracking.jsonl import read_metrics


def exported_scores(weights: Path, step: int | None) -> dict:
    """The last evaluation the run logged at or before ``step`` (``{"step": s, score: value, ...}``), read from
    the run's ``metrics.jsonl`` beside the weights (a run directory) or one level up (a checkpoint); ``{}``
    for a bare weights file or a run that never evaluated."""
    scores = set(objectives())
    for folder in (weights.parent, weights.parent.parent):
        log = folder / "metrics.jsonl"
        if not log.is_file():
            continue
        evaluated = [r for r in read_metrics(log) if scores & set(r) and (step is None or r.get("step", 0) <= step)]
        if evaluated:
            last = evaluated[-1]
            return {"step": last.get("step"), **{k: last[k] for k in sorted(scores & set(last))}}
        return {}
    return {}
