"""``distgan ls``: the runs and sweeps under a storage, each summed up from the files its directory holds.

Nothing here asks Ray: a run's state is read from its directory (``distgan.persist.rundir`` lists the files),
so the listing works for a run that ended long ago, one on another machine's storage, or one under a URI.

- failed: ``failed.json`` is there (an error no restart cures, ``rundir.record_failure``);
- finished: ``history.jsonl`` ends with a ``finished`` row (a resumed run appends a start after it), or,
  in a run older than that file, the exported ``generator.json`` is there;
- running: neither, and training wrote something within ``RUNNING_WITHIN_S`` (``TRAINING_WRITES``);
- stopped: neither, and nothing written since (killed, preempted for good, interrupted).

A sweep (``sweep.yaml``; see ``distgan.launch.tune``) is one entry: its trials counted and its best trial
named, from ``results.json`` when the sweep has ended, else from the trials' own metrics.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Union

import pyarrow.fs as pafs
import yaml

from distgan.config import ConfigError
from distgan.models import MODELS
from distgan.persist import checkpoint
from distgan.persist.rundir import FAILED, RAY_SNAPSHOT, recorded_failure
from distgan.persist.storage import Storage, StoreDir
from distgan.tracking import driver_log, history
from distgan.tracking.startup import FILE as STARTUP_FILE

DEFAULT_STORAGE = "runs"
"""Where ``distgan train`` keeps runs when neither ``--storage`` nor ``train.storage`` says (the value of
``distgan.launch.train.DEFAULT_STORAGE``, which this layer cannot import: a test holds them equal)."""

RUNNING_WITHIN_S = 600.0
"""A run that has neither finished nor failed counts as running when training wrote a file this recently. Metrics
are appended every ``train.log_every`` steps, so a live run writes far more often than this; a run whose
driver was killed stops writing at once."""

METRICS_FILE = "metrics.jsonl"
GENERATOR_META = "generator.json"

TRAINING_WRITES = frozenset({"config.yaml", driver_log.FILE, METRICS_FILE, history.FILE, STARTUP_FILE,
                             RAY_SNAPSHOT})
"""The files of a run directory whose writes tell a live run (with its checkpoint directories): the config a
start writes, the driver's console (every progress line, and the waits before the first step), the metrics
log, the history's starts and restarts, the start-up marks and Ray Train's record of each checkpoint. Other
files are written after training, or by other commands into a stopped run (``report.html`` by ``distgan
report``, ``generator.onnx`` by ``distgan export``, the exported ``generator.*``), so their times say nothing
about whether it still trains."""
SWEEP_WRITES = frozenset({"sweep.yaml"})
"""A sweep's own file written at its start; while it runs its trials write (``results.json`` and
``best_config.yaml`` come at its end, which ``results.json`` marks anyway; ``report.html`` from ``distgan
report``)."""

RUNNING, FINISHED, FAILED_STATUS, STOPPED = "running", "finished", "failed", "stopped"


@dataclass
class Entry:
    """One line of ``distgan ls``; ``--json`` prints these fields."""

    name: str
    kind: str
    """``run`` or ``sweep``."""
    task: Optional[str]
    family: Optional[str]
    status: str
    step: Optional[int]
    """The last step logged (a sweep: the furthest any trial got)."""
    steps: Optional[int]
    """``train.steps`` of its config."""
    best_metric: Optional[str] = None
    best_value: Optional[float] = None
    best_step: Optional[int] = None
    best_trial: Optional[str] = None
    """A sweep's best trial."""
    checkpoint: Optional[str] = None
    """The newest checkpoint directory's name (a sweep: its best trial's)."""
    wall_s: Optional[float] = None
    """From the first start to the last write (time between separate commands included)."""
    trials: Optional[int] = None
    error: Optional[str] = None
    """A failed run's recorded error."""
    location: str = ""
    last_write: Optional[float] = field(default=None, repr=False)
    """Epoch seconds of the newest write of training (``TRAINING_WRITES``): what running and stopped are told
    apart by."""

    def as_dict(self) -> dict:
        return asdict(self)


def list_storage(storage: Union[str, Storage], directions: Mapping[str, str], now: Optional[float] = None
                 ) -> list[Entry]:
    """Every run and sweep directly under ``storage``, by name; ``storage`` may also be one run (listed alone)
    or one sweep (its trials listed).

    ``directions`` maps each evaluation score to ``min`` or ``max`` (``distgan.metrics.registry``); its order is
    the preference among the scores a run logged for its best metric. ``now`` (epoch seconds, default the
    present) is what ``RUNNING_WITHIN_S`` counts back from.
    """
    storage = storage if isinstance(storage, Storage) else Storage.parse(storage)
    storage.check_reachable()
    _check_directory(storage)
    now = time.time() if now is None else now
    root = storage.as_dir()
    if root.is_file("sweep.yaml"):
        return [run_entry(root.child(f"trials/{t}"), directions, now) for t in _trial_names(root)]
    if root.is_file("config.yaml"):
        return [run_entry(root, directions, now)]
    entries = []
    for name in root.subdirs():
        child = root.child(name)
        if child.is_file("sweep.yaml"):
            entries.append(sweep_entry(child, directions, now))
        elif child.is_file("config.yaml"):
            entries.append(run_entry(child, directions, now))
    return entries


def _check_directory(storage: Storage) -> None:
    """Refuse a storage that is a file, or a directory that is not there. Under a URI a directory is only a
    prefix of the objects' names: an empty one does not exist either, and is listed as holding nothing."""
    kind = storage.fs.get_file_info(storage.root).type
    if kind == pafs.FileType.File:
        raise ConfigError(f"{storage.display()} is a file: `ls` lists a storage directory (or URI) holding runs, "
                          f"a run directory or a sweep directory")
    if kind == pafs.FileType.NotFound and not storage.remote:
        raise FileNotFoundError(f"{storage.display()} does not exist: `ls` lists a storage directory holding "
                                f"runs, a run directory or a sweep directory")


def _listing(run: StoreDir) -> tuple[dict[str, pafs.FileInfo], list[str]]:
    """The run directory's files (by name) and subdirectories, in one listing of the store."""
    infos = run.fs.get_file_info(pafs.FileSelector(run.base, allow_not_found=True))
    files = {i.base_name: i for i in infos if i.type == pafs.FileType.File}
    return files, sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)


def _mtime(info: pafs.FileInfo) -> Optional[float]:
    return info.mtime.timestamp() if info.mtime is not None else None


def _jsonl(run: StoreDir, rel: str) -> list[dict]:
    """The rows of a JSON-lines file; a line cut short by a write in progress is left out."""
    try:
        text = run.read_text(rel)
    except (OSError, UnicodeDecodeError):
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _json(run: StoreDir, rel: str) -> dict:
    try:
        value = json.loads(run.read_text(rel))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _config(run: StoreDir, rel: str = "config.yaml") -> dict:
    try:
        value = yaml.safe_load(run.read_text(rel))
    except (OSError, yaml.YAMLError):
        return {}
    return value if isinstance(value, dict) else {}


def _task_of(family: Optional[str], meta: dict) -> Optional[str]:
    """The task the exported generator records, else the one its model family serves."""
    if meta.get("task"):
        return meta["task"]
    if family in MODELS.names():
        return MODELS.get(family).task
    return None


def _newest_checkpoint(run: StoreDir, subdirs: list[str]) -> Optional[str]:
    """The newest ``checkpoint_NNNNNN`` of the run; a sweep's trial keeps them under ``attempts/attempt_*``."""
    names = [d for d in subdirs if checkpoint.number(d) is not None]
    if "attempts" in subdirs:
        attempts = run.child("attempts")
        names += [f"attempts/{a}/{c}" for a in attempts.subdirs() for c in attempts.child(a).subdirs()
                  if checkpoint.number(c) is not None]
    return max(names, key=lambda n: checkpoint.number(n.rsplit("/", 1)[-1]), default=None)


def best_score(records: list[dict], directions: Mapping[str, str], preferred: list[str]
               ) -> tuple[Optional[str], Optional[float], Optional[int]]:
    """(score, its best value, the step it was logged at) over ``records``: the first score of ``preferred``
    then of ``directions`` that the records hold, best by its direction."""
    logged = {k for r in records for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    order = [s for s in preferred if s in directions] + [s for s in directions if s not in preferred]
    score = next((s for s in order if s in logged), None)
    if score is None:
        return None, None, None
    sign = 1 if directions[score] == "min" else -1
    scored = [r for r in records if isinstance(r.get(score), (int, float))]
    best = min(scored, key=lambda r: sign * r[score])
    return score, float(best[score]), best.get("step")


def _preferred_scores(cfg: dict, directions: Mapping[str, str]) -> list[str]:
    """The scores of the config's ``eval.metrics`` (``auto``: none preferred; the registry's order decides)."""
    spec = str((cfg.get("eval") or {}).get("metrics", "auto"))
    if spec.strip() == "auto":
        return []
    names = [n.strip() for n in spec.split(",") if n.strip()]
    # A metric reports scores of its own name or others (``pr``: precision, recall): both are tried.
    return [s for n in names for s in directions if s == n] + [n for n in names if n not in directions]


def _status(files: dict, rows: list[dict], last_write: Optional[float], now: float) -> str:
    if FAILED in files:
        return FAILED_STATUS
    if rows and rows[-1].get("event") == history.FINISHED:
        return FINISHED
    if not rows and GENERATOR_META in files:  # a run from before history.jsonl: its export marks its end
        return FINISHED
    if last_write is not None and now - last_write <= RUNNING_WITHIN_S:
        return RUNNING
    return STOPPED


def run_entry(run: StoreDir, directions: Mapping[str, str], now: float) -> Entry:
    """The summary of one run directory."""
    files, subdirs = _listing(run)
    cfg = _config(run)
    model = cfg.get("model") or {}
    family = model.get("family")
    meta = _json(run, GENERATOR_META) if GENERATOR_META in files else {}
    records = _jsonl(run, METRICS_FILE) if METRICS_FILE in files else []
    rows = _jsonl(run, history.FILE) if history.FILE in files else []
    ckpt = _newest_checkpoint(run, subdirs)
    # Checkpoint directories have a modification time on a file system (not on an object store, whose
    # "directories" are prefixes); the files beside them are rewritten as often anyway.
    times = [t for t in (_mtime(i) for n, i in files.items() if n in TRAINING_WRITES) if t is not None]
    if ckpt is not None and not run.storage.remote:
        times += [t for t in [_mtime(run.info(ckpt))] if t is not None]
    last_write = max(times, default=None)
    starts = [r.get("launch") or r.get("time") for r in rows]
    starts += [_json(run, STARTUP_FILE).get("marks", {}).get("start")] if STARTUP_FILE in files else []
    starts = [t for t in starts if isinstance(t, (int, float))]
    if not starts and "config.yaml" in files:
        starts = [t for t in [_mtime(files["config.yaml"])] if t is not None]
    first = min(starts, default=None)
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    step = max(steps) if steps else (rows[-1].get("step") if rows else None)
    if step is None and ckpt is not None:
        step = checkpoint.number(ckpt.rsplit("/", 1)[-1])
    score, value, at = best_score(records, directions, _preferred_scores(cfg, directions))
    status = _status(files, rows, last_write, now)
    return Entry(
        name=run.name, kind="run", task=_task_of(family, meta), family=family, status=status, step=step,
        steps=(cfg.get("train") or {}).get("steps"), best_metric=score, best_value=value, best_step=at,
        checkpoint=ckpt, wall_s=(last_write - first) if first is not None and last_write is not None else None,
        error=recorded_failure(run) if status == FAILED_STATUS else None, location=run.display(),
        last_write=last_write)


def _trial_names(sweep: StoreDir) -> list[str]:
    return sweep.child("trials").subdirs()


def sweep_entry(sweep: StoreDir, directions: Mapping[str, str], now: float) -> Entry:
    """The summary of one sweep directory: trials counted, the best one named."""
    cfg = _config(sweep, "sweep.yaml")
    family = (cfg.get("model") or {}).get("family")
    trials = [run_entry(sweep.child(f"trials/{t}"), directions, now) for t in _trial_names(sweep)]
    results = _json(sweep, "results.json")
    metric = results.get("metric") or (cfg.get("tune") or {}).get("metric")
    best = results.get("best") if isinstance(results.get("best"), dict) else None
    if best is None and metric in directions:  # not ended: the best of what the trials logged so far
        sign = 1 if directions[metric] == "min" else -1
        scored = [t for t in trials if t.best_metric == metric and t.best_value is not None]
        top = min(scored, key=lambda t: sign * t.best_value, default=None)
        if top is not None:
            best = {"trial": top.name, metric: top.best_value, "step": top.best_step}
    by_name = {t.name: t for t in trials}
    best_trial = by_name.get(best["trial"]) if best else None
    writes = [t.last_write for t in trials if t.last_write is not None]
    files, _ = _listing(sweep)
    writes += [t for t in (_mtime(i) for n, i in files.items() if n in SWEEP_WRITES) if t is not None]
    last_write = max(writes, default=None)
    starts = [t.last_write - t.wall_s for t in trials if t.last_write is not None and t.wall_s is not None]
    first = min(starts, default=None)
    if results:
        status = FINISHED
    elif any(t.status == RUNNING for t in trials) or (last_write is not None and now - last_write <= RUNNING_WITHIN_S):
        status = RUNNING
    else:
        status = STOPPED
    steps = [t.step for t in trials if t.step is not None]
    return Entry(
        name=sweep.name, kind="sweep", task=_task_of(family, {}), family=family, status=status,
        step=max(steps, default=None), steps=(cfg.get("train") or {}).get("steps"),
        best_metric=metric if best else None, best_value=best.get(metric) if best else None,
        best_step=best.get("step") if best else None, best_trial=best.get("trial") if best else None,
        checkpoint=best_trial.checkpoint if best_trial else None,
        wall_s=(last_write - first) if first is not None and last_write is not None else None,
        trials=len(trials) or len(results.get("trials") or []), location=sweep.display(), last_write=last_write)


# -- the table ------------------------------------------------------------------------

HEADER = ("NAME", "TASK/FAMILY", "STATUS", "STEP", "BEST", "CHECKPOINT", "WALL")


def format_wall(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _cells(e: Entry) -> tuple[str, ...]:
    kind = f"{e.task or '?'}/{e.family or '?'}"
    step = f"{e.step if e.step is not None else '-'}/{e.steps if e.steps is not None else '-'}"
    if e.kind == "sweep":
        step = f"{e.trials} trials, {step}"
    best = "-"
    if e.best_metric is not None and e.best_value is not None:
        where = f" ({e.best_trial})" if e.best_trial else f" @{e.best_step}" if e.best_step is not None else ""
        best = f"{e.best_metric} {e.best_value:.4g}{where}"
    name = f"{e.name}/" if e.kind == "sweep" else e.name
    return name, kind, e.status, step, best, e.checkpoint or "-", format_wall(e.wall_s)


def format_table(entries: list[Entry]) -> str:
    """One aligned line per entry under a header (sweeps end in ``/``)."""
    table = [HEADER, *(_cells(e) for e in entries)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)
