"""The end of a sweep: one row per trial, the best trial's config as YAML, its generator exported."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from distgan.sweeps import space as search_space
from distgan.sweeps.checks import mode
from distgan.config import Config
from distgan.persist.storage import Storage, StoreDir, local_dir


@dataclass
class SweepResult:
    sweep_dir: Path
    """The sweep's files on this machine: its directory, or for a sweep under a URI a copy of its summary
    (results.json, best_config.yaml, best/)."""
    rows: list[dict]
    """One per trial: trial, values, objective, step, status."""
    best: Optional[dict]
    """The best row, or None when no trial reported the objective."""
    location: str = ""
    """Where the sweep is kept, as the user named the storage: a directory or a URI."""


class SweepFiles:
    """Writes into the sweep's directory on its storage, and into this machine's copy when that is another."""

    def __init__(self, sweep: Storage, local: Path):
        self.dir = sweep.as_dir()
        self.local = local if sweep.remote else None

    def write(self, rel: str, data: bytes) -> None:
        self.dir.write_bytes(rel, data)
        if self.local is not None:
            local_dir(self.local).write_bytes(rel, data)


def copy_generator(source: StoreDir, files: SweepFiles, dest: str) -> bool:
    """Copy ``generator.safetensors`` + ``.json`` from a run or checkpoint directory to ``dest`` in the
    sweep; False if it has none."""
    if not source.is_file("generator.safetensors"):
        return False
    for name in ("generator.safetensors", "generator.json"):
        files.write(f"{dest}/{name}", source.read_bytes(name))
    return True


def trial_rows(cfg: Config, grid) -> list[dict]:
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
    metric, sign = cfg.tune.metric, 1 if mode(cfg) == "min" else -1
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


def summarize(cfg: Config, sweep: Storage, local: Path, grid) -> SweepResult:
    """Print the table; write results.json, best_config.yaml and best/generator.* into the sweep."""
    files = SweepFiles(sweep, local)
    where = sweep.display()
    rows = trial_rows(cfg, grid)
    best = best_row(cfg, rows)
    files.write("results.json", json.dumps({"metric": cfg.tune.metric, "mode": mode(cfg),
                                            "trials": rows, "best": best}, indent=2).encode())
    print(format_rows(cfg, rows), flush=True)
    if best is None:
        print(f"No trial reported {cfg.tune.metric}; see the trials' logs under {where}/tune", flush=True)
        return SweepResult(local, rows, None, where)
    raw = search_space.apply(cfg.to_dict(), best["values"])
    best_cfg = Config.from_dict(raw)
    name = files.dir.name
    files.write("best_config.yaml", (
        f"# best trial of sweep {name}: {best['trial']} ({cfg.tune.metric} {best[cfg.tune.metric]:.6g} "
        f"at step {best['step']})\n" + yaml.safe_dump({k: v for k, v in best_cfg.to_dict().items() if k != "tune"},
                                                      sort_keys=False)).encode())
    # The trial's export, else (a trial stopped before its end exports nothing) its last checkpoint in Tune's
    # copy, a path on the sweep's own storage.
    exported = copy_generator(files.dir.child(f"trials/{best['trial']}"), files, "best") or (
        best["checkpoint"] is not None and copy_generator(StoreDir(sweep, best["checkpoint"]), files, "best"))
    print(f"Best: {best['trial']} {cfg.tune.metric} {best[cfg.tune.metric]:.6g}; config "
          f"{where}/best_config.yaml" + (f"; generator {where}/best" if exported else "")
          + (f" (copies in {local})" if sweep.remote else ""), flush=True)
    return SweepResult(local, rows, best, where)
