"""``distgan tune``: a Ray Tune sweep whose every trial is a full ``distgan train`` run.

Ray Train V2's Train-in-Tune pattern: each Tune trial runs ``trial_driver``, a
light function (0.01 CPU) that builds and fits a TorchTrainer with the
trial's config, and forwards the reports that carry the objective to Tune,
with the checkpoint Ray Train just committed. Schedulers act on those: ASHA
stops a trial between reports, PBT restarts a trial's driver from another
trial's checkpoint with mutated values, which the workers then apply over
the restored optimizer state.

Layout of ``STORAGE/NAME/``::

    sweep.yaml            the sweep's config (base config + tune section)
    trials/<trial>/       one distgan run directory per trial (config.yaml, metrics.jsonl, samples/,
                          generator.*); attempts/attempt_NNN/ holds Ray Train's checkpoints of each start
    tune/                 Tune's experiment state (``--resume`` restores from it)
    results.json          one row per trial: values, objective, steps, status
    best_config.yaml      the best trial's full config, for ``distgan train``
    best/                 the best trial's generator (generator.safetensors + .json)

The storage is a directory or a URI (``distgan.persist.storage``). Under a URI, Tune keeps its state in the bucket,
each trial is a run under a URI like any other (its files uploaded, its checkpoints Ray Train's), a trial
that PBT restarts downloads the checkpoint Tune hands it from Tune's copy, and the summary is written
into the bucket and into a staging copy on this machine (``SweepResult.sweep_dir``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import pyarrow.fs as pafs
import ray
import yaml
from ray import tune
from ray.util.queue import Empty, Queue

from distgan import data
from distgan.persist import layout, rundir
from distgan.checks import validate
from distgan.config import Config, ConfigError, load_config, with_absolute_paths
from distgan.launch.progress import ForwardReports, driver_queue
from distgan.launch.startup_wait import clear_after_sweep, first_attempt_s, startup_timeout_of
from distgan.launch.sweep_results import SweepResult, summarize
from distgan.launch.train import DEFAULT_STORAGE, build_trainer, ray_cluster, resolve_use_gpu
from distgan.persist.storage import Storage, staging_dir
from distgan.sweeps import space as search_space
from distgan.sweeps.checks import check_space_given, check_sweep, mode
from distgan.sweeps.schedulers import SCHEDULERS
from distgan.sweeps.searchers import SEARCHERS
from distgan.sweeps.space import to_tune_domain

log = logging.getLogger(__name__)

DRIVER_CPU = 0.01
"""A trial's driver only waits on its TorchTrainer; a whole CPU would starve the workers of small clusters."""


# -- search space and resources -------------------------------------------------


def trial_resources(cfg: Config, space: dict[str, search_space.Domain]) -> tuple[float, int]:
    """The most CPUs and GPUs one trial can need, over the values its space can take."""
    def largest(key: str, default: int) -> int:
        domain = space.get(key)
        return int(max(domain.examples())) if domain is not None else default

    workers = largest("scaling.num_workers", cfg.scaling.num_workers)
    cpus = workers * largest("scaling.cpus_per_worker", cfg.scaling.cpus_per_worker)
    # A trial whose data streams needs a CPU free for its decoding tasks (see launch.train.cpus_needed).
    return cpus + DRIVER_CPU + (cfg.data.cpus_per_task if data.streams(cfg.data) else 0), workers


def check_cluster_fits(cfg: Config, space: dict, use_gpu: bool) -> int:
    """Raise when no trial can ever start; otherwise return how many fit at once."""
    cpus, workers = trial_resources(cfg, space)
    have = ray.cluster_resources()
    have_cpus, have_gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
    if cpus > have_cpus:
        raise ConfigError(f"scaling.num_workers: a trial needs {cpus - DRIVER_CPU:g} CPUs ({workers} workers x "
                          f"scaling.cpus_per_worker) plus {DRIVER_CPU} for its driver, but the Ray cluster has "
                          f"{have_cpus:g}; lower scaling.num_workers or scaling.cpus_per_worker, or add nodes")
    if use_gpu and workers > have_gpus:
        raise ConfigError(f"scaling.num_workers: a trial needs {workers} GPUs (one per worker), but the Ray "
                          f"cluster has {have_gpus:g}")
    fit = int(have_cpus // cpus)
    if use_gpu:
        fit = min(fit, int(have_gpus // workers))
    return max(fit, 1)


# -- one trial ---------------------------------------------------------------------


def trial_driver(trial_config: dict, *, base: dict, sweep_dir: str, use_gpu: bool, sweep_name: str,
                 start_attempt_s: Optional[float] = None) -> None:
    """Runs in a Tune trial: one TorchTrainer with this trial's values, its objective reports forwarded to Tune."""
    values = dict(trial_config.get("space", {}))
    cfg = validate(Config.from_dict(search_space.apply(base, values)))
    trial = tune.get_context().get_trial_name()
    sweep = Storage.parse(sweep_dir)
    run = rundir.prepare(sweep.child("trials"), trial, cfg)
    # Every start of the trial (first, after a failure, after a PBT exploit) is a fresh Train run that
    # starts from the checkpoint Tune hands over, so Train never resumes a stale one of its own.
    attempts = sweep.child(f"trials/{trial}/attempts")
    attempt = f"attempt_{sum(d.startswith('attempt_') for d in attempts.as_dir().subdirs()):03d}"
    start = tune.get_checkpoint()  # on the sweep's storage (Tune's copy under tune/)
    queue = driver_queue()
    trainer = build_trainer(cfg, run, attempts, use_gpu, [ForwardReports(queue)], train_name=attempt,
                            initial_checkpoint=sweep.text_of(start.path) if start is not None else None,
                            wandb_group=sweep_name, wandb_extra={"tune/" + k: v for k, v in values.items()},
                            start_attempt_s=start_attempt_s)
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # re-raised in the trial's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    try:
        # The trial's own config has no tune section (search_space.apply drops it): the objective is the sweep's.
        _forward(queue, thread, base["tune"]["metric"], attempts.fs)
    finally:
        queue.shutdown()
    thread.join()
    if "error" in outcome:
        raise startup_timeout_of(outcome["error"]) or outcome["error"]  # a start that timed out: just why


def _forward(queue: Queue, fitting: threading.Thread, metric: str, filesystem: pafs.FileSystem) -> None:
    """Report each evaluation of the running TorchTrainer to Tune, with its checkpoint (a path on
    ``filesystem``, which Tune copies into its own storage), until it ends."""
    while True:
        try:
            record = queue.get(timeout=0.5)
        except Empty:
            if fitting.is_alive():
                continue
            if queue.empty():
                break
            continue
        if "_startup" in record:  # the workers' start waits (startup_wait): to the console, not to Tune
            print(record["_startup"], flush=True)
            continue
        checkpoint = record.pop("_checkpoint", None)
        # Schedulers compare the objective, so only evaluation reports go to Tune (checkpoint steps are
        # evaluation steps; the config insists on it).
        if metric in record:
            # Tune's console table shows a result's first few keys: make those the step and the scores.
            first = ["step", metric, "fid", "kid", "precision", "recall", "class_acc"]
            ordered = {k: record[k] for k in first if k in record}
            ordered.update(record)
            tune.report(ordered, checkpoint=tune.Checkpoint(checkpoint, filesystem) if checkpoint else None)


# -- the sweep -----------------------------------------------------------------


def build_tuner(cfg: Config, sweep: Storage, use_gpu: bool, concurrent: int, resume: bool) -> tune.Tuner:
    space = search_space.parse_space(cfg.tune.space)
    trainable = tune.with_resources(
        # The first try's timeout at starting a trial's workers, as this process's environment sets it: the trials'
        # drivers run in Ray's worker processes, whose environment is the cluster's.
        tune.with_parameters(trial_driver, base=cfg.to_dict(), sweep_dir=sweep.text, use_gpu=use_gpu,
                             sweep_name=sweep.as_dir().name, start_attempt_s=first_attempt_s()),
        {"cpu": DRIVER_CPU})
    if resume:
        return tune.Tuner.restore(sweep.child("tune").text, trainable=trainable, resume_errored=True)
    return tune.Tuner(
        trainable,
        param_space={"space": {k: to_tune_domain(d) for k, d in space.items()}},
        tune_config=tune.TuneConfig(
            metric=cfg.tune.metric, mode=mode(cfg), num_samples=cfg.tune.num_samples,
            scheduler=SCHEDULERS.get(cfg.tune.scheduler.type).build(cfg, space),
            search_alg=SEARCHERS.get(cfg.tune.search).build(cfg, concurrent),
            trial_name_creator=lambda trial: f"trial_{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name="tune", storage_path=sweep.text,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures),
            verbose=1),
    )


def sweep_storage(storage: Union[str, Path, None], cfg: Optional[Config]) -> Storage:
    """``--storage``, else the config's ``train.storage``, else ``./runs``: a directory or a URI."""
    if storage is None and cfg is not None and cfg.train.storage:
        return Storage.parse(cfg.train.storage, "train.storage")
    return Storage.parse(storage or DEFAULT_STORAGE)


def resolve_sweep(cfg: Optional[Config], storage: Storage, name: Optional[str],
                  resume: bool) -> tuple[Config, Storage, Path]:
    """The config to run (a resumed sweep keeps its own), the sweep's directory on its storage, and where
    this machine keeps its files (the directory itself, or a staging copy under a URI); creates nothing."""
    if name is not None:
        layout.check_name(name)
    name = name or f"sweep_{rundir.default_name(cfg)}"
    sweep = storage.child(name)
    files = sweep.as_dir()
    local = staging_dir(storage, name) if storage.remote else Path(files.path())
    started = files.is_dir("tune") and files.is_file("sweep.yaml")
    if resume:
        if not started:
            raise ConfigError(f"--resume: no sweep to resume in {files.display()}")
        if storage.remote:
            files.download("sweep.yaml", local / "sweep.yaml")
        return check_sweep(load_config(local / "sweep.yaml")), sweep, local
    if started:
        raise ConfigError(f"sweep {name!r} already exists in {files.display()}; add --resume to continue it, "
                          f"or pick another --name")
    check_space_given(cfg)
    return cfg, sweep, local


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run in ``path``, and go back after if there is a directory to go back to.

    As a Ray job (``distgan submit --tune``) the driver starts in the job's working directory, which Ray
    removes from under it once it has joined the cluster (observed with Ray 2.60); Tune makes paths relative
    while it collects results, and that fails in ``os.getcwd()`` without a working directory that exists.
    """
    try:
        previous: Optional[str] = os.getcwd()
    except FileNotFoundError:
        previous = None
    os.chdir(path)
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(OSError):
                os.chdir(previous)


def run_tune(cfg: Optional[Config], name: Optional[str] = None, address: Optional[str] = None,
             storage: Union[str, Path, None] = None, resume: bool = False) -> SweepResult:
    """Run (or ``resume``) the sweep of ``cfg.tune`` over ``cfg``; see the module docstring for the layout."""
    if cfg is not None:
        check_sweep(cfg)  # a Config changed in Python after loading is checked here, before Ray
    store = sweep_storage(storage, cfg)
    store.check_reachable()
    cfg, sweep, local = resolve_sweep(cfg if cfg is None else with_absolute_paths(cfg), store, name, resume)
    space = search_space.parse_space(cfg.tune.space)
    per_trial, _ = trial_resources(cfg, space)
    print(f"{'Resuming' if resume else 'Starting'} sweep {sweep.as_dir().name!r} in {sweep.display()}", flush=True)
    started = time.monotonic()
    # An embedded Ray gets room for one trial's workers plus the drivers.
    with ray_cluster(address, math.ceil(per_trial) + 1):
        use_gpu = resolve_use_gpu(cfg)
        fits = check_cluster_fits(cfg, space, use_gpu)  # before anything is written
        local.mkdir(parents=True, exist_ok=True)
        if not resume:
            sweep.as_dir().write_text("sweep.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        concurrent = min(cfg.tune.max_concurrent or fits, fits)
        with working_directory(local):
            grid = build_tuner(cfg, sweep, use_gpu, concurrent, resume).fit()
            # A trial stopped while its workers were starting leaves a placement group that Ray keeps for as long
            # as this process lives, placed the moment room frees up (startup_wait): removed here.
            for left in clear_after_sweep():
                log.info("removed placement group %s left by a stopped trial", left.describe())
            result = summarize(cfg, sweep, local, grid)
    log.info("sweep finished in %.0f s", time.monotonic() - started)
    return result
