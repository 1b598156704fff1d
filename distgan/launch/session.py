"""The Ray Train entry point of each worker and the Session it hands the loop."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Iterator, Optional

import ray.train
import ray.train.torch
import torch

from distgan.checks import validate
from distgan.config import Config, ConfigError, DataConfig
from distgan.launch.streaming import make_streamer
from distgan.persist import rundir
from distgan.persist.errors import CheckpointError
from distgan.persist.storage import CheckpointDownloads, Storage, StoreDir, is_uri, staging_dir
from distgan.runtime.loop import RunInfo
from distgan.runtime.malloc import keep_freed_memory
from distgan.runtime.nonfinite import NonFiniteError
from distgan.tasks import build_trainer

FINAL_ERRORS = (ConfigError, CheckpointError, NonFiniteError)
"""Errors a restart from the last checkpoint would only meet again: recorded so that the restarts stop at once."""


class RaySession:
    """``distgan.runtime.loop.Session`` over Ray Train's context, report and checkpoints."""

    def __init__(self, use_gpu: bool, initial_checkpoint: Optional[str] = None,
                 checkpoints: Optional[StoreDir] = None, staging: Optional[Path] = None,
                 data: Optional[DataConfig] = None):
        ctx = ray.train.get_context()
        self.streamer = make_streamer(data) if data is not None else None
        """Streamed data is decoded by Ray tasks anywhere in the cluster (``distgan.launch.streaming``)."""
        self.initial_checkpoint = initial_checkpoint
        """A checkpoint to start from when Ray Train has none: a directory, or a URI (a sweep under one)."""
        self.checkpoints, self.staging = checkpoints, staging
        """Under a URI: the directory of Ray Train's checkpoints, and this node's staging copy of the run."""
        self.checkpoint_downloads: Optional[CheckpointDownloads] = None
        """Set while a checkpoint of a run under a URI is being restored (see ``latest_checkpoint``)."""
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device: torch.device = ray.train.torch.get_device()
        self.use_gpu = use_gpu

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Optional[Path]]:
        """The latest checkpoint Ray Train committed, else the trial's starting one, else None.

        Ray Train V2 hands every worker ``STORAGE/NAME/<checkpoint_dir_name>`` from its checkpoint
        manager's record. On the local or shared file system runs use, ``as_directory`` yields that
        path itself, so its earlier ``checkpoint_NNNNNN`` siblings are there to fall back to
        (``checkpoint.load_newest_complete``). Under a URI it yields where the checkpoint will be
        downloaded to in this rank's staging directory, and ``checkpoint_downloads`` fetches it (and
        earlier ones, if it is refused) as the restore tries them; the downloads go when it is done.
        A starting checkpoint given as a URI (a trial of a sweep under one) is downloaded the same way.
        """
        ckpt = ray.train.get_checkpoint()
        if ckpt is None and self.initial_checkpoint and is_uri(self.initial_checkpoint):
            store = Storage.parse(self.initial_checkpoint)
            holder, name = store.as_dir().parent(), store.as_dir().name
        elif ckpt is None:
            # A fresh run may start from a given checkpoint (a sweep trial that PBT pointed at a better one).
            yield Path(self.initial_checkpoint) if self.initial_checkpoint else None
            return
        elif self.checkpoints is not None:
            holder, name = self.checkpoints, Path(ckpt.path).name
        else:
            with ckpt.as_directory() as directory:
                yield Path(directory)
            return
        downloads = CheckpointDownloads(holder, self.staging / ".checkpoints" / f"rank{self.rank}")
        self.checkpoint_downloads = downloads
        try:
            yield downloads.local / name
        finally:
            self.checkpoint_downloads = None
            downloads.discard()

    def report(self, metrics: dict, checkpoint_dir: Optional[Path] = None, name: Optional[str] = None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)

    def preemption_notice(self) -> Optional[str]:
        """Ray Train's word on nodes of this group being drained for preemption (a barrier across the
        workers: each gets the same answer)."""
        info = ray.train.get_preemption_info()
        if info is None:
            return None
        deadline = (f", {info.deadline_ms / 1000 - time.time():.0f} s before its deadline"
                    if info.deadline_ms else "")
        nodes = ", ".join(node[:12] for node in info.preempted_node_ids)
        return f"Ray reports node {nodes} (ranks {info.preempted_ranks}) being preempted{deadline}"


def quiet_ray_reports() -> None:
    """Ray Train logs every ``report`` call in full at INFO; the driver's progress line says it better."""
    from ray.train.v2._internal.execution import context  # Ray's internals: only this tweak touches them

    logging.getLogger(context.__file__).setLevel(logging.WARNING)  # that module names its logger by path


def train_fn(loop_config: dict) -> None:
    """What ``TorchTrainer`` runs on every worker; plain dicts cross the Ray boundary."""
    quiet_ray_reports()
    remote = None
    if loop_config.get("remote_storage"):  # a run under a URI: this node works on a staging copy
        storage = Storage.parse(loop_config["remote_storage"])
        remote = storage.run(loop_config["name"])
        checkpoints = Storage.parse(loop_config["checkpoint_storage"]).run(loop_config["checkpoint_name"])
        run_dir = staging_dir(storage, loop_config["name"])
        run_dir.mkdir(parents=True, exist_ok=True)
    else:
        run_dir, checkpoints = Path(loop_config["run_dir"]), None
    rundir.raise_if_failed(remote or run_dir)
    cfg = Config.from_dict(loop_config["config"])
    if cfg.scaling.tune_malloc and not loop_config["use_gpu"]:
        keep_freed_memory()  # this process is the run's worker: process-wide settings are its own
    info = RunInfo(run_dir, loop_config["name"], loop_config["wandb_id"],
                   loop_config.get("wandb_group"), loop_config.get("wandb_extra") or {},
                   loop_config.get("startup") or {}, launch=loop_config.get("launch", 0.0), remote=remote)
    session = RaySession(loop_config["use_gpu"], loop_config.get("initial_checkpoint"), checkpoints, run_dir,
                         cfg.data)
    try:
        # Checked again here: the files it names must exist on this worker's node too.
        build_trainer(validate(cfg), info, session).run()
    except FINAL_ERRORS as exc:
        rundir.record_failure(remote or run_dir, exc)
        raise
