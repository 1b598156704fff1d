"""The end of a sweep: one row per trial, the best trial's config as YAML, its generator exported."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from distgan import search_space
from distgan.config import Config


@dataclass
class SweepResult:
    sweep_dir: Path
    rows: list[dict]
    """One per trial: trial, values, objective, step, status."""
    best: Optional[dict]
    """The best row, or None when no trial reported the objective."""


def copy_generator(source_dir: Path, dest: Path) -> bool:
    """Copy ``generator.safetensors`` + ``.json`` from a run or checkpoint directory; False if it has none."""
    if not (source_dir / "generator.safetensors").is_file():
        return False
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("generator.safetensors", "generator.json"):
        tmp = dest / (name + ".tmp")
        shutil.copyfile(source_dir / name, tmp)
        os.replace(tmp, dest / name)
    return True


def trial_rows(cfg: Config, sweep_dir: Path, grid) -> list[dict]:
    metric = cfg.tune.metric
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        step = metrics.get("step")
        if result.error is not None:
            status = "error"
        elif step is not None and step >= cfg.train.steps:
            status = "finished"
        else:
            status = "stopped early"
        value = metrics.get(metric)
        rows.append({"trial": Path(result.path).name, "values": dict((result.config or {}).get("space", {})),
                     metric: value if value is None or math.isfinite(value) else None, "step": step,
                     "status": status,
                     "checkpoint": result.checkpoint.path if result.checkpoint is not None else None})
    return sorted(rows, key=lambda r: r["trial"])


def best_row(cfg: Config, rows: list[dict]) -> Optional[dict]:
    """Best objective among finished trials (a trial stopped early is judged on a younger model)."""
    metric, sign = cfg.tune.metric, 1 if search_space.tune_mode(cfg) == "min" else -1
    scored = [r for r in rows if r[metric] is not None]
    finished = [r for r in scored if r["status"] == "finished"] or scored
    return min(finished, key=lambda r: sign * r[metric]) if finished else None


def format_rows(cfg: Config, rows: list[dict]) -> str:
    metric = cfg.tune.metric
    keys = sorted({k for r in rows for k in r["values"]})
    header = ["trial", *keys, metric, "step", "status"]
    table = [header]
    for r in rows:
        cells = [r["trial"]] + [_fmt(r["values"].get(k)) for k in keys] + [_fmt(r[metric]), _fmt(r["step"]),
                                                                          r["status"]]
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def summarize(cfg: Config, sweep_dir: Path, grid):
    """Print the table; write results.json, best_config.yaml and best/generator.*."""
    rows = trial_rows(cfg, sweep_dir, grid)
    best = best_row(cfg, rows)
    _write(sweep_dir / "results.json", json.dumps({"metric": cfg.tune.metric, "mode": search_space.tune_mode(cfg),
                                                   "trials": rows, "best": best}, indent=2))
    print(format_rows(cfg, rows), flush=True)
    if best is None:
        print(f"No trial reported {cfg.tune.metric}; see the trials' logs under {sweep_dir / 'tune'}", flush=True)
        return SweepResult(sweep_dir, rows, None)
    raw = search_space.apply(cfg.to_dict(), best["values"])
    best_cfg = Config.from_dict(raw)
    _write(sweep_dir / "best_config.yaml",
           f"# best trial of sweep {sweep_dir.name}: {best['trial']} ({cfg.tune.metric} {best[cfg.tune.metric]:.6g} "
           f"at step {best['step']})\n" + yaml.safe_dump({k: v for k, v in best_cfg.to_dict().items() if k != "tune"},
                                                         sort_keys=False))
    exported = copy_generator(sweep_dir / "trials" / best["trial"], sweep_dir / "best") or (
        best["checkpoint"] is not None and copy_generator(Path(best["checkpoint"]), sweep_dir / "best"))
    print(f"Best: {best['trial']} {cfg.tune.metric} {best[cfg.tune.metric]:.6g}; config "
          f"{sweep_dir / 'best_config.yaml'}" + (f"; generator {sweep_dir / 'best'}" if exported else ""), flush=True)
    return SweepResult(sweep_dir, rows, best)
