"""The run directory ``STORAGE/NAME/``: its layout, and starting or resuming one.

    config.yaml          the resolved config (written before any worker starts)
    metrics.jsonl        one record per logged step (rank 0)
    samples/             step_NNNNNN.png grids from a fixed latent batch
    checkpoint_NNNNNN/   Ray Train checkpoints (see distgan.checkpoint)
    generator.*          the exported generator (end of training)
    wandb/, wandb_id     the W&B run and its id, kept across restarts
    failed.json          an error no restart can cure, recorded by the worker that met it (see record_failure)
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import yaml

from distgan import checkpoint
from distgan.config import Config, ConfigError

log = logging.getLogger(__name__)

# Sections that decide the shapes of the checkpointed state: a resumed run may
# change step counts or intervals, not these.
FROZEN_SECTIONS = ("model", "data")


@dataclass
class RunDir:
    path: Path
    name: str
    wandb_id: str
    resumed: bool


FAILED = "failed.json"


class RunFailed(RuntimeError):
    """The run met an error that restarting from a checkpoint cannot cure (a config error found on a worker,
    a diverged network, no checkpoint it can resume from)."""


def record_failure(path: Path, exc: BaseException) -> None:
    """Note in the run directory that the run stopped with ``exc``, which a restart would only meet again.

    Ray Train retries every worker failure ``train.max_failures`` times and cannot be told which errors are
    final; each retry of a diverged run would restore the checkpoint and train up to the same divergence
    again. The restarted workers find this note and stop before building anything (``raise_if_failed``),
    and the driver reports its message. The next ``distgan train`` of the run removes it (``create``).
    """
    tmp = path / f"{FAILED}.{os.getpid()}.tmp"  # every rank meeting the error writes it: no shared temp file
    tmp.write_text(json.dumps({"error": type(exc).__name__, "message": str(exc), "time": time.time()}))
    os.replace(tmp, path / FAILED)


def recorded_failure(path: Path) -> Optional[str]:
    """The message of the failure ``record_failure`` noted in ``path``, if any."""
    try:
        failure = json.loads((path / FAILED).read_text())
        return f"{failure['error']}: {failure['message']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def raise_if_failed(path: Path) -> None:
    failure = recorded_failure(path)
    if failure is not None:
        raise RunFailed(f"an earlier attempt of this run stopped with {failure} -- restarting cannot cure it, "
                        f"so this attempt stops before training")


def storage_root(storage: Union[str, Path]) -> Path:
    """``--storage`` as the absolute directory runs are kept in; a URI is refused by name.

    Run directories are written with plain file I/O (config, metrics, samples, exports, checkpoints that
    every worker reads back), so the storage must be a file system path: on a multi-node cluster, one
    that every node mounts. Without this check ``s3://bucket/runs`` would become a local directory
    named ``s3:``.
    """
    text = str(storage)
    if "://" in text:
        raise ConfigError(f"--storage {text!r}: URI storage (s3://, gs://, ...) is not supported; distgan "
                          f"writes run directories as files. Use a directory every node mounts: a shared file "
                          f"system (NFS, EFS, Filestore, Lustre) or the bucket mounted with a FUSE driver")
    return Path(text).expanduser().resolve()


def default_name(cfg: Config) -> str:
    data = Path(cfg.data.path).name if cfg.data.path else cfg.data.name
    return f"{cfg.model.family}_{data}-{time.strftime('%Y%m%d-%H%M%S')}"


def has_checkpoint(path: Path) -> bool:
    return any(p.is_dir() for p in path.glob("checkpoint_*"))


RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"
"""Ray Train's record of the run's committed checkpoints, kept in the run directory."""


def committed_checkpoints(path: Path) -> tuple[Optional[Path], list[Path]]:
    """What Ray Train's record of the run lists: the latest committed checkpoint (the one it will hand
    the workers of a resumed run) and every checkpoint it keeps."""
    try:
        snapshot = json.loads((path / RAY_SNAPSHOT).read_text())
        latest = snapshot["latest_checkpoint_result"]
        kept = [path / r["checkpoint_dir_name"] for r in snapshot["checkpoint_results"]]
        return (path / latest["checkpoint_dir_name"] if latest else None), kept
    except (OSError, ValueError, KeyError, TypeError):
        return None, []


def check_resume(path: Path, name: str, cfg: Config) -> None:
    """Say before anything starts what a resume of ``path`` will start from, by manifests and sizes only.

    A refused latest checkpoint is named with its fault, and the one the workers will fall back to; a
    checkpoint of another worker count, or no complete checkpoint at all, stops here with what to do.
    """
    latest, kept = committed_checkpoints(path)
    gone = [p.name for p in kept if not p.is_dir()]
    if gone:  # Ray refuses such a run with a long message about its snapshot; say what happened instead
        raise ConfigError(f"run {name!r} cannot be resumed: {', '.join(gone)} in {path} was removed, and Ray "
                          f"Train resumes only with every checkpoint it recorded in place. Put it back (an empty "
                          f"directory will do: it is then refused and the newest complete checkpoint before it "
                          f"resumed), or start a new --name from this run's generator: train.init_from={path}")
    if latest is None:
        partial = ", ".join(sorted(p.name for p in path.glob("checkpoint_*") if p.is_dir()))
        if partial:
            log.warning("run %r: Ray recorded no committed checkpoint (%s never completed); it starts "
                        "again from step 0", name, partial)
        return
    try:
        start, state, refused = checkpoint.newest_complete(latest)
    except checkpoint.CheckpointError as exc:
        raise ConfigError(f"run {name!r} cannot be resumed: {exc}") from None
    for refused_path, reason in refused:
        log.warning("run %r: checkpoint %s cannot be resumed: %s", name, refused_path.name, reason)
    if refused:
        log.warning("run %r: resuming from %s instead (steps after it are trained again)", name, start.name)
    written_by = state.world_size
    if written_by != cfg.scaling.num_workers:
        log.warning("run %r: %s was written by %d workers and this run has %d: it is resharded on resume "
                    "(another global batch: a correct continuation, not a bit-exact one)", name, start.name,
                    written_by, cfg.scaling.num_workers)


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
    name: str
    resumed: bool


def prepare(storage: Path, name: Optional[str], cfg: Config) -> RunDir:
    """Create the run directory, or check that ``cfg`` may resume the one that is there."""
    return create(check(storage, name, cfg), cfg)


def check(storage: Path, name: Optional[str], cfg: Config) -> Plan:
    """Check that ``cfg`` may start ``storage/name`` or resume what is there, writing nothing.

    Callers with more checks to make (the launcher's, which need the cluster) make them between this and
    ``create``, so that a refused resume leaves the run directory as it was.
    """
    name = name or default_name(cfg)
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: use a plain directory name")
    path = (storage / name).resolve()
    config_file = path / "config.yaml"
    resumed = config_file.is_file() and has_checkpoint(path)
    new = cfg.to_dict()
    if config_file.is_file():
        old = _flatten(yaml.safe_load(config_file.read_text()) or {})
        changed = [k for k, v in _flatten(new).items()
                   if k.split(".")[0] in FROZEN_SECTIONS and k in old and old[k] != v]
        # The PSNR stage of super-resolution checkpoints no D; adding one is a new stage, not a resume.
        old_adv, new_adv = old.get("loss.adversarial_weight", 1.0), cfg.loss.adversarial_weight
        if resumed and (old_adv == 0) != (new_adv == 0):
            raise ConfigError(f"loss.adversarial_weight: run {name!r} was trained with {old_adv!r}, now {new_adv!r}; "
                              f"a discriminator cannot be added to or dropped from a run. Start the GAN stage "
                              f"as a new run from this one's generator: train.init_from={path} --name NEW")
        if changed and resumed:
            details = ", ".join(f"{k}: {old[k]!r} -> {_flatten(new)[k]!r}" for k in changed)
            raise ConfigError(f"run {name!r} in {path} was trained with different settings ({details}); "
                              f"resume it with its own config.yaml, or pick a new --name")
    if config_file.is_file() and (resumed or (path / RAY_SNAPSHOT).is_file()):
        check_resume(path, name, cfg)
    return Plan(path, name, resumed)


def create(plan: Plan, cfg: Config) -> RunDir:
    """Create the checked run directory (or take over the existing one): config.yaml and the W&B id."""
    path = plan.path
    path.mkdir(parents=True, exist_ok=True)
    (path / FAILED).unlink(missing_ok=True)  # a new command, perhaps with the cause fixed: its workers try again
    config_file = path / "config.yaml"
    tmp = path / "config.yaml.tmp"
    tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    os.replace(tmp, config_file)
    id_file = path / "wandb_id"
    if id_file.is_file():
        wandb_id = id_file.read_text().strip()
    else:
        wandb_id = uuid.uuid4().hex[:12]
        id_file.write_text(wandb_id + "\n")
    return RunDir(path, plan.name, wandb_id, plan.resumed)
