"""The run directory ``STORAGE/NAME/``: its layout, and starting or resuming one.

    config.yaml          the resolved config (written before any worker starts)
    metrics.jsonl        one record per logged step (rank 0)
    samples/             step_NNNNNN.png grids from a fixed latent batch
    checkpoint_NNNNNN/   Ray Train checkpoints (see distgan.persist.checkpoint)
    generator.*          the exported generator (end of training)
    wandb/, wandb_id     the W&B run and its id, kept across restarts
    failed.json          an error no restart can cure, recorded by the worker that met it (see record_failure)

The storage is a directory or a URI (``distgan.persist.storage``): every read and write here goes through a
``StoreDir``, and a run under a URI has a local staging copy (``RunDir.path``) its processes write into.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import yaml

from distgan.persist import checkpoint, layout
from distgan.config import Config, ConfigError
from distgan.core.filesystem import display
from distgan.persist.storage import Storage, StoreDir, local_dir, staging_dir

log = logging.getLogger(__name__)

# Sections that decide the shapes of the checkpointed state: a resumed run may
# change step counts or intervals, not these.
FROZEN_SECTIONS = ("model", "data")


@dataclass
class RunDir:
    path: Path
    """Where this process writes the run's files: the run directory, or its staging copy under a URI."""
    name: str
    wandb_id: str
    resumed: bool
    files: StoreDir
    """The run directory on its storage (the same directory as ``path`` on a file system)."""


FAILED = "failed.json"


class RunFailed(RuntimeError):
    """The run met an error that restarting from a checkpoint cannot cure (a config error found on a worker,
    a diverged network, no checkpoint it can resume from)."""


def _as_dir(run: Union[Path, StoreDir]) -> StoreDir:
    return run if isinstance(run, StoreDir) else local_dir(run)


def record_failure(run: Union[Path, StoreDir], exc: BaseException) -> None:
    """Note in the run directory that the run stopped with ``exc``, which a restart would only meet again.

    Ray Train retries every worker failure ``train.max_failures`` times and cannot be told which errors are
    final; each retry of a diverged run would restore the checkpoint and train up to the same divergence
    again. The restarted workers find this note and stop before building anything (``raise_if_failed``),
    and the driver reports its message. The next ``distgan train`` of the run removes it (``create``).
    """
    # Every rank meeting the error writes it: StoreDir writes through a temporary name of its own process.
    _as_dir(run).write_text(FAILED, json.dumps({"error": type(exc).__name__, "message": str(exc),
                                                "time": time.time()}))


def recorded_failure(run: Union[Path, StoreDir]) -> Optional[str]:
    """The message of the failure ``record_failure`` noted in ``run``, if any."""
    try:
        failure = json.loads(_as_dir(run).read_text(FAILED))
        return f"{failure['error']}: {failure['message']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def raise_if_failed(run: Union[Path, StoreDir]) -> None:
    failure = recorded_failure(run)
    if failure is not None:
        raise RunFailed(f"an earlier attempt of this run stopped with {failure} -- restarting cannot cure it, "
                        f"so this attempt stops before training")


def default_name(cfg: Config) -> str:
    """``<family>_<data>-<time>``: the data is the built-in set's name, or the last part of ``data.path``
    (a URI's store options left out: ``?endpoint_override=host:9000`` is no directory name)."""
    data = display(cfg.data.path).rstrip("/").rsplit("/", 1)[-1] if cfg.data.path else cfg.data.name
    return f"{cfg.model.family}_{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def has_checkpoint(run: StoreDir) -> bool:
    return any(checkpoint.number(name) is not None for name in run.subdirs())


RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"
"""Ray Train's record of the run's committed checkpoints, kept in the run directory."""


def committed_checkpoints(run: StoreDir) -> tuple[Optional[str], list[str]]:
    """What Ray Train's record of the run lists, by name: the latest committed checkpoint (the one it
    will hand the workers of a resumed run) and every checkpoint it keeps."""
    try:
        snapshot = json.loads(run.read_text(RAY_SNAPSHOT))
        latest = snapshot["latest_checkpoint_result"]
        kept = [r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]]
        return (latest["checkpoint_dir_name"] if latest else None), kept
    except (OSError, ValueError, KeyError, TypeError):
        return None, []


def check_resume(run: Union[Path, StoreDir], name: str, cfg: Config) -> None:
    """Say before anything starts what a resume of ``path`` will start from, by manifests and sizes only.

    A refused latest checkpoint is named with its fault, and the one the workers will fall back to; a
    checkpoint of another worker count, or no complete checkpoint at all, stops here with what to do.
    """
    run = _as_dir(run)
    path = run.display()
    latest, kept = committed_checkpoints(run)
    subdirs = run.subdirs()
    gone = [k for k in kept if k not in subdirs]
    if gone:  # Ray refuses such a run with a long message about its snapshot; say what happened instead
        raise ConfigError(f"run {name!r} cannot be resumed: {', '.join(gone)} in {path} was removed, and Ray "
                          f"Train resumes only with every checkpoint it recorded in place. Put it back (an empty "
                          f"directory will do: it is then refused and the newest complete checkpoint before it "
                          f"resumed), or start a new --name from this run's generator: train.init_from={path}")
    if latest is None:
        partial = ", ".join(d for d in subdirs if checkpoint.number(d) is not None)
        if partial:
            log.warning("run %r: Ray recorded no committed checkpoint (%s never completed); it starts "
                        "again from step 0", name, partial)
        return
    try:
        # On a file system the pickles are checked too; under a URI the workers check them once downloaded.
        handed_over = run.child(latest) if run.storage.remote else Path(run.path(latest))
        start, state, refused = checkpoint.newest_complete(handed_over)
    except checkpoint.CheckpointError as exc:
        raise ConfigError(f"run {name!r} cannot be resumed: {exc}") from None
    for refused_path, reason in refused:
        log.warning("run %r: checkpoint %s cannot be resumed: %s", name, refused_path.name, reason)
    if refused:
        log.warning("run %r: resuming from %s instead (steps after it are trained again)", name, start.name)
    written_by = state.world_size
    if not cfg.scaling.min_workers <= written_by <= cfg.scaling.max_workers:
        log.warning("run %r: %s was written by %d workers and this run has %d: it is resharded on resume "
                    "(another global batch: a correct continuation, not a bit-exact one)", name, start.name,
                    written_by, cfg.scaling.max_workers)


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@dataclass
class Plan:
    """A run directory that ``check`` found ``cfg`` may start or resume; nothing written yet."""
    path: Path
    """Where this process writes the run's files (see ``RunDir.path``)."""
    name: str
    resumed: bool
    files: StoreDir


def prepare(storage: Union[Path, Storage], name: Optional[str], cfg: Config) -> RunDir:
    """Create the run directory, or check that ``cfg`` may resume the one that is there."""
    return create(check(storage, name, cfg), cfg)


def check(storage: Union[Path, Storage], name: Optional[str], cfg: Config) -> Plan:
    """Check that ``cfg`` may start ``storage/name`` or resume what is there, writing nothing.

    Callers with more checks to make (the launcher's, which need the cluster) make them between this and
    ``create``, so that a refused resume leaves the run directory as it was.
    """
    name = name or default_name(cfg)
    layout.check_name(name)
    storage = storage if isinstance(storage, Storage) else Storage.parse(storage)
    run = storage.run(name)
    path = staging_dir(storage, name) if storage.remote else Path(run.path())
    has_config = run.is_file("config.yaml")
    resumed = has_config and has_checkpoint(run)
    new = cfg.to_dict()
    if has_config:
        old = _flatten(yaml.safe_load(run.read_text("config.yaml")) or {})
        changed = [k for k, v in _flatten(new).items()
                   if k.split(".")[0] in FROZEN_SECTIONS and k in old and old[k] != v]
        # The PSNR stage of super-resolution checkpoints no D; adding one is a new stage, not a resume.
        old_adv, new_adv = old.get("loss.adversarial_weight", 1.0), cfg.loss.adversarial_weight
        if resumed and (old_adv == 0) != (new_adv == 0):
            raise ConfigError(f"loss.adversarial_weight: run {name!r} was trained with {old_adv!r}, now {new_adv!r}; "
                              f"a discriminator cannot be added to or dropped from a run. Start the GAN stage "
                              f"as a new run from this one's generator: train.init_from={run.display()} --name NEW")
        if changed and resumed:
            details = ", ".join(f"{k}: {old[k]!r} -> {_flatten(new)[k]!r}" for k in changed)
            raise ConfigError(f"run {name!r} in {run.display()} was trained with different settings ({details}); "
                              f"resume it with its own config.yaml, or pick a new --name")
    if has_config and (resumed or run.is_file(RAY_SNAPSHOT)):
        check_resume(run, name, cfg)
    return Plan(path, name, resumed, run)


def create(plan: Plan, cfg: Config) -> RunDir:
    """Create the checked run directory (or take over the existing one): config.yaml and the W&B id."""
    run = plan.files
    plan.path.mkdir(parents=True, exist_ok=True)
    run.delete(FAILED)  # a new command, perhaps with the cause fixed: its workers try again
    config = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    run.write_text("config.yaml", config)
    if run.is_file("wandb_id"):
        wandb_id = run.read_text("wandb_id").strip()
    else:
        wandb_id = uuid.uuid4().hex[:12]
        run.write_text("wandb_id", wandb_id + "\n")
    if run.storage.remote:  # the staging copy gets them too: it is what a user of this machine looks in
        (plan.path / "config.yaml").write_text(config)
        (plan.path / "wandb_id").write_text(wandb_id + "\n")
    return RunDir(plan.path, plan.name, wandb_id, plan.resumed, run)
