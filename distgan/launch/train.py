"""``distgan train``: one TorchTrainer whose workers run ``distgan.runtime.loop``.

Order of work, so that bad input fails before anything starts:
config (already validated) -> run directory -> Ray (embedded or ``address``)
-> TorchTrainer with failure/checkpoint policy -> fit -> result.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from distgan import data
from distgan.persist import rundir
from distgan.checks import validate
from distgan.config import Config, ConfigError, with_absolute_paths
from distgan.persist.export import META as GENERATOR_META, WEIGHTS as GENERATOR_WEIGHTS
from distgan.launch import preemption
from distgan.launch.progress import ProgressPrinter
from distgan.launch.rendezvous import LoopbackTorchConfig
from distgan.launch.session import train_fn
from distgan.launch.startup_wait import startup_timeout_of, watch_start
from distgan.persist.storage import Storage
from distgan.tracking import driver_log
from distgan.tracking.startup import FILE as STARTUP_FILE

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "runs"


@dataclass
class TrainResult:
    run_dir: Path
    """The run directory; for a run under a URI, this machine's copy of its files (not its checkpoints)."""
    name: str
    metrics: dict
    """The last metrics rank 0 reported."""
    checkpoint: Optional[str]
    """The latest checkpoint directory (a path on the storage's file system)."""
    location: str = ""
    """Where the run is kept, as the user named the storage: a directory or a URI."""


@contextlib.contextmanager
def ray_cluster(address: Optional[str], min_cpus: int) -> Iterator[None]:
    """Join ``address``, reuse an already-initialised Ray, or start an embedded one sized to the machine.

    The job's runtime env makes a SIGTERM to a worker a preemption notice (``distgan.launch.preemption``); a
    Ray the caller initialised keeps its own runtime env, and its workers exit on SIGTERM as Ray's do."""
    if ray.is_initialized():
        yield
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=preemption.runtime_env())
    else:
        # Logical CPUs: at least what the workers ask for, so a 2-worker run
        # also starts on a 1-core laptop (the workers then share the core).
        # The dashboard serves Ray's state API, which Train's placement-group cleaner polls;
        # without it every poll logs a warning. Everything binds to loopback only.
        ray.init(num_cpus=max(os.cpu_count() or 1, min_cpus), include_dashboard=True,
                 dashboard_host="127.0.0.1", logging_level=logging.WARNING, _node_ip_address="127.0.0.1",
                 runtime_env=preemption.runtime_env())
    try:
        yield
    finally:
        ray.shutdown()


def cpus_needed(cfg: Config) -> float:
    """Logical CPUs one run holds in Ray: its workers', plus one decoding task's when its data streams (an
    embedded Ray sized for the workers alone would leave the decoding tasks waiting forever for a CPU they hold)."""
    workers = cfg.scaling.max_workers * cfg.scaling.cpus_per_worker  # an elastic run: room to grow to max
    return workers + (cfg.data.cpus_per_task if data.streams(cfg.data) else 0)


def warn_if_data_starves(cfg: Config) -> None:
    """Say so when the cluster has no CPU left for decoding tasks once the workers hold theirs: the tasks would
    wait for one, with no word from Ray, unless the cluster grows (an autoscaling one may)."""
    if not data.streams(cfg.data):
        return
    have = ray.cluster_resources().get("CPU", 0.0)
    if have < cpus_needed(cfg):
        log.warning("data.cpus_per_task: the cluster has %g CPUs and the workers hold %g, so the data's "
                    "decoding tasks (%g CPU each) wait until it grows; add a node (a CPU-only one will do) or "
                    "lower scaling.cpus_per_worker",
                    have, cfg.scaling.max_workers * cfg.scaling.cpus_per_worker, cfg.data.cpus_per_task)


def resolve_use_gpu(cfg: Config) -> bool:
    gpus = ray.cluster_resources().get("GPU", 0)
    if cfg.scaling.use_gpu == "auto":
        return gpus >= 1
    if cfg.scaling.use_gpu and gpus < 1:
        raise ConfigError("scaling.use_gpu: true, but the Ray cluster has no GPUs; use auto or false")
    return bool(cfg.scaling.use_gpu)


def worker_env(use_gpu: bool) -> dict[str, str]:
    env = {"PYTHONWARNINGS": "ignore::DeprecationWarning"}
    if not use_gpu:
        # Tells DeepSpeed up front, instead of a probe that warns "unable to detect" on every worker.
        env["DS_ACCELERATOR"] = "cpu"
    return env


REPORT_BARRIER_TIMEOUT_ENV = "RAY_TRAIN_COLLECTIVE_TIMEOUT_S"
"""Ray Train V2's timeout of the barrier every ``ray.train.report`` joins (ray/train/v2/_internal/constants.py).
Unset, a rank that never reports leaves the others waiting forever, with a warning a minute."""


def set_report_barrier_timeout(seconds: float) -> None:
    """Bound Ray Train's report barrier by ``train.collective_timeout_s``.

    The barrier lives in an actor the Train controller starts, and the controller takes Ray Train's
    settings only from the environment of the process that calls ``fit`` (it copies them into its own
    runtime env), so this sets them there: the worker runtime env would not reach it. The config wins
    over a value already in the environment, so config.yaml says what a run used.
    """
    os.environ[REPORT_BARRIER_TIMEOUT_ENV] = repr(float(seconds))


def build_trainer(cfg: Config, run: rundir.RunDir, storage: Union[Path, Storage], use_gpu: bool, callbacks: list,
                  train_loop: Callable[[dict], None] = train_fn, train_name: Optional[str] = None,
                  start_attempt_s: Optional[float] = None, **loop_extras) -> TorchTrainer:
    """The TorchTrainer of one run; Ray Train keeps its checkpoints in ``storage/train_name`` (default: the run's name).

    ``loop_extras`` reach every worker in its loop config (``initial_checkpoint``, ``wandb_group``, ...).
    Waits on other ranks give up after ``train.collective_timeout_s``: torch's process group (set up by
    Ray with ``TorchConfig.timeout_s``; DeepSpeed adopts it) and Ray's report barrier. A failed wait is a
    worker failure, which ``FailureConfig`` turns into a restart from the last checkpoint. (DeepSpeed's
    gradient reductions run on its own copy of the world group: ``engines.bound_deepspeed_world_group``.)
    Every start of the workers gives up after ``scaling.start_timeout_s`` (``startup_wait``; its first try
    waits ``start_attempt_s``, default this process's ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` or 60 s).
    """
    set_report_barrier_timeout(cfg.train.collective_timeout_s)
    storage = storage if isinstance(storage, Storage) else Storage.parse(storage)
    loop_config = {"config": cfg.to_dict(), "run_dir": str(run.path), "name": run.name,
                   "wandb_id": run.wandb_id, "use_gpu": use_gpu, "launch": time.time(), **loop_extras}
    if run.files.storage.remote:
        # The run's files are ``remote_storage/name``; Ray Train's checkpoints ``storage/train_name``, the same
        # directory for a run of its own, the trial's attempt directory in a sweep.
        loop_config.update(remote_storage=run.files.storage.text, checkpoint_storage=storage.text,
                           checkpoint_name=train_name or run.name)
    return TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cfg.scaling.cpus_per_worker},
                                     placement_strategy=cfg.scaling.placement_strategy,
                                     elastic_resize_monitor_interval_s=cfg.scaling.elastic.monitor_interval_s),
        # On loopback when every worker is on this machine (an embedded run): launch/rendezvous.py.
        torch_config=LoopbackTorchConfig(backend="nccl" if use_gpu else "gloo",
                                         timeout_s=cfg.train.collective_timeout_s),
        run_config=RunConfig(
            name=train_name or run.name,
            storage_path=storage.text,
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
            callbacks=[*callbacks, watch_start(cfg.scaling.start_timeout_s, run.name, callbacks, start_attempt_s)],
            worker_runtime_env={"env_vars": worker_env(use_gpu)},
        ),
    )


def resolve_storage(given: Union[str, Path, None], cfg: Config) -> Storage:
    """``--storage``, else the config's ``train.storage``, else ``./runs``; errors name the one used."""
    if given:
        return Storage.parse(given)
    if cfg.train.storage:
        return Storage.parse(cfg.train.storage, "train.storage")
    return Storage.parse(DEFAULT_STORAGE)


def train(cfg: Config, name: Optional[str] = None, address: Optional[str] = None,
          storage: Union[str, Path, None] = None, progress: bool = True,
          train_loop: Callable[[dict], None] = train_fn, started: Optional[float] = None) -> TrainResult:
    """Train ``cfg`` on Ray; resumes ``storage/name`` when it holds checkpoints of this run.

    ``train_loop`` is the per-worker function (tests wrap it to inject faults); ``started`` (epoch seconds)
    is when the command began, the start of the start-up breakdown in ``startup.json``.
    """
    startup = {"start": started or time.time()}
    validate(cfg)  # a Config changed in Python after loading is checked here, before Ray starts
    storage = resolve_storage(storage, cfg)
    storage.check_reachable()
    cfg = with_absolute_paths(cfg)
    plan = rundir.check(storage, name, cfg)
    notice = (time.time(), f"{'Resuming' if plan.resumed else 'Starting'} run {plan.name!r} in {plan.files.display()}")
    print(notice[1], flush=True)
    with ray_cluster(address, math.ceil(cpus_needed(cfg))):
        startup["ray_ready"] = time.time()
        use_gpu = resolve_use_gpu(cfg)
        warn_if_data_starves(cfg)
        for net in ("g", "d"):
            if cfg.deepspeed.precision_of(net) == "fp16" and not use_gpu:
                raise ConfigError(f"{cfg.deepspeed.precision_key(net)}: fp16 needs GPUs and the cluster has none; "
                                  f"use fp32 or bf16")
        # Only now, with every check passed: a refused resume must leave config.yaml as it was.
        run = rundir.create(plan, cfg)
        # From here every console line is also kept, stamped, in the run's train.log; the printer is made inside
        # so that its stream is the kept one.
        with kept_log(run, notice), (ProgressPrinter(run.name, cfg.train.steps) if progress
                                     else contextlib.nullcontext()) as printer:
            trainer = build_trainer(cfg, run, storage, use_gpu, [printer.callback] if printer else [], train_loop,
                                    startup=startup)
            try:
                result = trainer.fit()
            except Exception as exc:
                if startup_timeout_of(exc) is not None:  # the workers never started: say why, no traceback
                    raise startup_timeout_of(exc) from None
                failure = rundir.recorded_failure(run.files)
                if failure is None:
                    raise
                raise rundir.RunFailed(f"run {run.name!r} stopped: {failure}") from None
    if storage.remote:
        fetch_outputs(run)
    ckpt = result.checkpoint.path if result.checkpoint is not None else None
    return TrainResult(run.path, run.name, dict(result.metrics or {}), ckpt, run.files.display())


def fetch_outputs(run: rundir.RunDir) -> None:
    """Copy a finished run's outputs from its URI into this machine's staging copy (``TrainResult.run_dir``),
    so that ``distgan sample`` and friends can read them; its checkpoints stay in the storage."""
    for rel in (GENERATOR_WEIGHTS, GENERATOR_META, STARTUP_FILE, "metrics.jsonl"):
        if run.files.is_file(rel):
            run.files.download(rel, run.path / rel)


@contextlib.contextmanager
def kept_log(run: rundir.RunDir, notice: tuple[float, str]) -> Iterator[None]:
    """The driver's console kept in ``train.log`` of the run (``distgan.tracking.driver_log``), after the start
    ``notice`` (time, line) printed before the run directory existed. Under a URI the staging copy is written
    and uploaded at the end, continuing the log the store holds (a resume may run on another machine)."""
    path = run.path / driver_log.FILE
    remote = run.files.storage.remote
    if remote and run.files.is_file(driver_log.FILE):
        run.files.download(driver_log.FILE, path)

    def upload(local: Path) -> None:
        try:
            run.files.upload(local, driver_log.FILE)
        except OSError as exc:  # the run's own outcome matters more than its log's copy
            log.warning("could not upload %s to %s: %s", driver_log.FILE, run.files.display(), exc)

    with driver_log.driver_log(path, [notice], upload if remote else None):
        yield
