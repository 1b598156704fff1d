"""``--dry-run`` of ``distgan train``, ``tune`` and ``submit``: what the command would do, checked as it
checks it, with Ray never started and nothing written.

A dry run makes the launcher's own checks, in the launcher's order, by calling them (``rundir.check``,
``resolve_sweep``, ``Storage.parse``), so it refuses exactly what the real command would refuse before Ray
starts. What only the cluster can tell (whether it has GPUs, how many trials fit at once) is said as a
condition. A storage URI is checked for its syntax only: reaching the store is the run's first step, and
a dry run should answer offline. This module imports the launchers, and with them Ray (importing Ray does
not start it); the CLI imports it only for a dry run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from distgan.config import Config, ConfigError, with_absolute_paths
from distgan.launch.submit import default_storage, entrypoint
from distgan.launch.train import DEFAULT_STORAGE, cpus_needed
from distgan.launch.tune import DRIVER_CPU, resolve_sweep, trial_resources
from distgan.persist import checkpoint, layout, rundir
from distgan.persist.storage import Storage, check_uri, is_uri
from distgan.sweeps.checks import check_space_given, mode
from distgan.sweeps.schedulers import SCHEDULERS
from distgan.sweeps.space import parse_space

StoragePath = Union[str, Path, None]


@dataclass
class Plan:
    """A command's plan as labelled lines, in the order a reader checks them."""

    command: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, text: str) -> None:
        self.rows.append((label, text))

    def value(self, label: str) -> Optional[str]:
        return next((text for lab, text in self.rows if lab == label), None)

    def render(self) -> str:
        width = max(len(label) for label, _ in self.rows)
        lines = [f"Dry run of distgan {self.command}: checked; nothing started, nothing written."]
        lines += [f"  {label:<{width}}  {text}" for label, text in self.rows]
        return "\n".join(lines)


# -- what every run shows ----------------------------------------------------------


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}{'' if n == 1 else 's'}"


def gpus_text(cfg: Config) -> str:
    # "auto" is decided against the cluster's resources once Ray is up (launch.train.resolve_use_gpu).
    use = cfg.scaling.use_gpu
    return "GPUs if the cluster has them, 1 per worker" if use == "auto" else ("1 GPU each" if use else "no GPU")


def add_run_rows(plan: Plan, cfg: Config) -> None:
    """Workers, engines and the length of the run: the same for a run and for each trial of a sweep."""
    s, ds = cfg.scaling, cfg.deepspeed
    width = (f"{s.min_workers} to {s.max_workers}, elastic ({s.elastic.batch.replace('_', ' ')} batch)" if s.is_elastic
             else f"{s.num_workers}")
    plan.add("workers", f"{width} ({_plural(s.cpus_per_worker, 'CPU')} each; {gpus_text(cfg)})")
    g, d = ds.precision_of("g"), ds.precision_of("d")
    precision = g if g == d else f"G {g}, D {d}"
    if "fp16" in (g, d) and s.use_gpu == "auto":
        precision += " (fp16 needs GPUs: refused on a cluster without)"  # resolve_use_gpu decides it with Ray up
    plan.add("engines", f"G ZeRO-{ds.stage('g')}, D ZeRO-{ds.stage('d')}, {precision}")
    data = cfg.data.path or cfg.data.name
    evaluation = f"evaluation every {cfg.eval.every}" if cfg.eval.every > 0 else "no evaluation"
    family = f"conditional {cfg.model.family}" if cfg.model.conditional else cfg.model.family
    plan.add("model", f"{family} on {data}; {cfg.train.steps} steps, checkpoint every "
                      f"{cfg.train.checkpoint_every}, {evaluation}")


def _cluster_text(address: Optional[str], min_cpus: float) -> str:
    if address:
        return f"joins {address}"
    # launch.train.ray_cluster sizes an embedded Ray so that the workers fit even on a small machine.
    return f"embedded local Ray ({max(os.cpu_count() or 1, math.ceil(min_cpus))} logical CPUs)"


def _local_storage(given: StoragePath, cfg: Optional[Config]):
    """(where, which setting named it, its Storage or None for a URI), picked as the launchers pick it:
    ``--storage``, else ``train.storage``, else ``./runs``. A URI's syntax is checked; its store is not
    contacted."""
    configured = cfg.train.storage if cfg is not None else None
    key = "--storage" if given else ("train.storage" if configured else "default")
    text = str(given or configured or DEFAULT_STORAGE)
    if is_uri(text):
        check_uri(text, "--storage" if key == "default" else key)
        return text.split("?", 1)[0].rstrip("/"), key, None  # the query may hold the store's options
    store = Storage.parse(text, "--storage" if key == "default" else key)
    store.check_reachable()  # as the launchers do: an unreadable directory fails here
    return store.display(), key, store


# -- distgan train -------------------------------------------------------------------


def train_plan(cfg: Config, name: Optional[str] = None, storage: StoragePath = None,
               address: Optional[str] = None) -> Plan:
    """What ``distgan train`` would run, after the checks it makes before Ray starts."""
    plan = Plan("train")
    where, key, store = _local_storage(storage, cfg)
    cfg = with_absolute_paths(cfg)  # the run compares config.yaml with absolute paths, so the dry run does
    if store is None:
        run_name = name or rundir.default_name(cfg)
        layout.check_name(run_name)  # rundir.check's first refusal, the one it makes without the store
        plan.add("run", f"{run_name!r}: fresh or resumed, as the store holds it (not contacted in a dry run)")
        plan.add("run dir", f"{where}/{run_name}")
    else:
        checked = rundir.check(store, name, cfg)  # the same refusals as the real run
        plan.add("run", f"{checked.name!r}, {resume_text(checked, cfg)}")
        plan.add("run dir", checked.files.display())
    plan.add("storage", f"{where} ({key})")
    add_run_rows(plan, cfg)
    plan.add("cluster", _cluster_text(address, cpus_needed(cfg)))
    return plan


def resume_text(checked, cfg: Config) -> str:
    """Fresh, or where a resume starts: the checkpoint ``rundir.check`` already accepted."""
    files = checked.files
    if not checked.resumed:
        there = files.is_file("config.yaml")
        return "fresh" + (" (takes over the run directory there, which has no checkpoint yet)" if there else "")
    latest, _ = rundir.committed_checkpoints(files)
    if latest is None:  # checkpoint directories, none of them committed by Ray Train
        return "resumed, but Ray recorded no committed checkpoint: it starts again from step 0"
    start, state, refused = checkpoint.newest_complete(Path(files.path(latest)))
    text = f"resumed from {start.name} (step {state.step} of {cfg.train.steps})"
    if refused:
        text += f"; refused, newer: {', '.join(Path(str(p)).name for p, _ in refused)}"
    return text


# -- distgan tune --------------------------------------------------------------------


def tune_plan(cfg: Optional[Config], name: Optional[str] = None, storage: StoragePath = None,
              address: Optional[str] = None, resume: bool = False) -> Plan:
    """What ``distgan tune`` would run (``cfg`` None: ``resume`` the named sweep with its own config)."""
    plan = Plan("tune")
    where, key, store = _local_storage(storage, cfg)
    if store is None:
        cfg = _uri_sweep(plan, cfg, name, where, resume)
    else:
        cfg, sweep, _ = resolve_sweep(cfg if cfg is None else with_absolute_paths(cfg), store, name, resume)
        plan.add("sweep", f"{sweep.as_dir().name!r}, {'resumed' if resume else 'new'}")
        plan.add("sweep dir", sweep.display())
    plan.add("storage", f"{where} ({key})")
    if cfg is not None:
        add_sweep_rows(plan, cfg, address)
    return plan


def _uri_sweep(plan: Plan, cfg: Optional[Config], name: Optional[str], where: str,
               resume: bool) -> Optional[Config]:
    """Under a URI the sweep's state is in the store, which a dry run does not contact."""
    if name is not None:
        layout.check_name(name)  # resolve_sweep's first refusal, the one it makes without the store
    if resume:
        plan.add("sweep", f"{name!r}, resumed with the sweep.yaml kept in the store (not read in a dry run)")
        plan.add("sweep dir", f"{where}/{name}")
        return None
    check_space_given(cfg)  # resolve_sweep's check, which needs the store for the rest
    sweep_name = name or f"sweep_{rundir.default_name(cfg)}"
    plan.add("sweep", f"{sweep_name!r}: new unless the store holds it (not contacted in a dry run)")
    plan.add("sweep dir", f"{where}/{sweep_name}")
    return cfg


def add_sweep_rows(plan: Plan, cfg: Config, address: Optional[str]) -> None:
    """Trials, space, objective, scheduler and searcher, and what one trial takes of the cluster."""
    t = cfg.tune
    space = parse_space(t.space)
    # Tune runs the whole grid for each sample: grid entries multiply, sampled ones do not.
    grid = math.prod(len(d.values) for d in space.values() if d.kind == "grid")
    plan.add("trials", f"{t.num_samples * grid}" + (f" ({t.num_samples} samples x {grid} grid points)"
                                                    if grid > 1 else ""))
    plan.add("space", "; ".join(f"{k} {d.kind} {list(d.values)}" for k, d in space.items()))
    plan.add("objective", f"{t.metric}, {mode(cfg)}")
    plan.add("scheduler", SCHEDULERS.get(t.scheduler.type).describe(cfg))
    plan.add("searcher", t.search + (f", seed {t.seed}" if t.seed is not None else ""))
    cpus, workers = trial_resources(cfg, space)
    gpus = {True: f", {workers} GPUs", False: "", "auto": f", {workers} GPUs if the cluster has them"}
    plan.add("per trial", f"{cpus:g} CPUs ({workers} workers, the largest the space allows, and "
                          f"{DRIVER_CPU:g} for its driver){gpus[cfg.scaling.use_gpu]}")
    plan.add("at once", str(t.max_concurrent) + " at most" if t.max_concurrent else
             "as many trials as the cluster holds")
    add_run_rows(plan, cfg)
    plan.add("cluster", _cluster_text(address, cpus + 1))  # launch.tune sizes it for one trial + drivers


# -- distgan submit ------------------------------------------------------------------


def submit_storage(given: StoragePath, cfg: Config) -> str:
    """Where the cluster keeps the job's runs; refused here, before anything is sent, when the cluster could
    not use it (a relative path would land in the job's temporary working directory)."""
    storage = str(given or cfg.train.storage or default_storage() or "")
    if not storage:
        raise ConfigError("--storage: where the cluster keeps runs, a path every node sees (a shared file "
                          "system) or a URI (s3://bucket/runs); or set DISTGAN_STORAGE")
    if is_uri(storage):
        check_uri(storage)  # reaching the store is left to the cluster, which may reach what we cannot
    elif not os.path.isabs(os.path.expanduser(storage)):
        raise ConfigError(f"--storage {storage!r}: give an absolute path on the cluster (or a URI); a relative one "
                          f"would name a directory inside the job's temporary working directory")
    return storage


def submit_name(cfg: Config, name: Optional[str], tune: bool) -> str:
    return name or ("sweep_" if tune else "") + rundir.default_name(cfg)


def submit_plan(cfg: Config, address: str, name: Optional[str], storage: StoragePath, tune: bool = False,
                resume: bool = False, package: str = "local") -> Plan:
    """What ``distgan submit`` would send; the run or sweep itself is planned as the cluster will see it when
    its storage is a directory this machine sees too (a shared file system), else left to the cluster."""
    target = submit_storage(storage, cfg)
    if not address.startswith(("http://", "https://")):  # what submit.client refuses before connecting
        raise ConfigError(f"--address {address!r}: the Jobs API address is the dashboard's, e.g. http://HEAD:8265")
    job_name = submit_name(cfg, name, tune)
    layout.check_name(job_name)  # submit.submit's own checks, in its order
    if tune and not resume:
        check_space_given(cfg)
    command = "tune" if tune else "train"
    if os.path.isdir(os.path.expanduser(target)):
        inner = (tune_plan(None if resume else cfg, job_name, target, "auto", resume) if tune
                 else train_plan(cfg, job_name, target, "auto"))
    else:
        inner = _unseen_storage_plan(cfg, job_name, target, tune, resume)
    plan = Plan(f"submit{' --tune' if tune else ''}")
    plan.add("job", entrypoint(command, job_name, target, resume))
    plan.add("Jobs API", f"{address} (not contacted in a dry run); package: {package}")
    plan.rows += inner.rows
    return plan


def _unseen_storage_plan(cfg: Config, name: str, target: str, tune: bool, resume: bool) -> Plan:
    """The job's run or sweep when only the cluster sees its storage: what the config alone says."""
    if tune and resume:  # the cluster resumes with the sweep's own sweep.yaml, which only it can read
        return Plan("tune", [("sweep", f"{name!r} in {target}, resumed with its own sweep.yaml")])
    what = "sweep" if tune else "run"
    inner = Plan(what, [(what, f"{name!r} in {target}: new or resumed as the cluster finds it (not visible "
                               f"from this machine)")])
    if tune:
        add_sweep_rows(inner, cfg, "auto")
    else:
        add_run_rows(inner, cfg)
    return inner
