"""Saving and restoring the full training state, and nothing else.

A checkpoint is one directory that every rank writes a part of (Ray Train
merges the ranks' directories in storage):

    G/, D/                       DeepSpeed checkpoints of each engine (tag "state"); no D/ for a run
                                 without a discriminator (the PSNR stage of super-resolution)
    generator.safetensors/.json  G_ema (or G) weights in fp32, also a usable export
    train_state.json             step, images seen, data position, world size, lr schedules, the GAN
                                 algorithm's state (rank 0)
    rng_rank{r}.safetensors      each rank's torch and latent RNG states
    manifest_rank{r}.json        the files rank r wrote, with their sizes

The manifests are written last: a checkpoint is complete only when all
``world_size`` manifests are there and every file they list has its size.
Anything else (a truncated shard, a rank that died mid-write) is refused with
the file named, rather than half-loaded.

Resuming takes the checkpoint Ray hands over or, when that one is refused, the
newest complete checkpoint before it among its ``checkpoint_NNNNNN`` siblings
(``load_newest_complete``); it never starts from scratch on its own. A
checkpoint of another world size is resharded (``distgan.persist.reshard``): ZeRO
partitions go through a DeepSpeed universal checkpoint.

Nothing in a checkpoint is ever unpickled in full. DeepSpeed 0.19 reads its
``.pt`` files with weights-only loading turned off (its
``TorchCheckpointEngine.load``), so a crafted file would run code on resume.
Before DeepSpeed touches a checkpoint, every ``.pt`` file's pickle is read
statically for the globals it names (``check_pickles``; no tensor data is
read); and while DeepSpeed loads, its checkpoint engine reads with
``weights_only=True``, allowing only the four classes its own checkpoints hold
(``DEEPSPEED_GLOBALS``; ``distgan.persist.safety``). A file naming anything else is an ``UnsafeCheckpoint``:
the run stops with the file and the globals named, instead of falling back.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from distgan.persist import layout, reshard
from distgan.persist.errors import CheckpointError, UnsafeCheckpoint, WorldSizeMismatch
from distgan.persist.export import save_generator
from distgan.persist.safety import check_pickles, weights_only_loads
from distgan.persist.storage import CheckpointDownloads, StoreDir, local_dir

TAG = "state"

_STOPS = (UnsafeCheckpoint, WorldSizeMismatch)
"""Refusals that stop the run instead of falling back to an older checkpoint, the first winning."""


@dataclass
class TrainState:
    """Counters of the loop; everything else about progress derives from them."""

    step: int = 0
    """Generator updates done."""
    images_seen: int = 0
    """Real images consumed by D across all ranks."""
    data: dict = field(default_factory=dict)
    """Sampler position (``ShardedBatches.state_dict``)."""
    world_size: int = 1
    """Ranks that wrote the checkpoint (ZeRO shards are per rank)."""
    lr_schedule: dict = field(default_factory=dict)
    """The learning-rate schedules trained with (``distgan.runtime.lr_schedule.describe``); their state is
    ``step``, the lr being a function of it. Empty in checkpoints from before schedules (constant lr)."""
    algorithm: dict = field(default_factory=dict)
    """The GAN algorithm's own state (``GANAlgorithm.state_dict``, e.g. ADA's p); global, so it survives a
    resharded resume. Empty when the algorithm keeps none, and in checkpoints from before it was saved."""


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def save(directory: Path, engine_g, engine_d, generator_export: Optional[tuple], state: TrainState,
         rng: dict[str, torch.Tensor], rank: int) -> None:
    """Write this rank's part of a checkpoint into ``directory`` (collective: all ranks call it).

    ``generator_export`` is ``(module, metadata)`` on rank 0 and None elsewhere; ``engine_d`` is None for a
    run without a discriminator.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # ``latest`` names the tag, so DeepSpeed's own tools (zero_to_fp32.py) find it without ``-t``.
    engine_g.save_checkpoint(str(directory / "G"), tag=TAG, save_latest=True)
    if engine_d is not None:
        engine_d.save_checkpoint(str(directory / "D"), tag=TAG, save_latest=True)
    save_file({k: v.contiguous() for k, v in rng.items()}, str(directory / f"rng_rank{rank}.safetensors"))
    if rank == 0:
        module, metadata = generator_export
        save_generator(directory, module, metadata)
        write_json_atomic(directory / "train_state.json", asdict(state))
    files = {str(p.relative_to(directory)): p.stat().st_size
             for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.startswith("manifest_")}
    write_json_atomic(directory / f"manifest_rank{rank}.json", {"rank": rank, "files": files})


def verify(directory: Union[Path, StoreDir]) -> TrainState:
    """Check that the checkpoint is complete: every rank that wrote it finished, every file has its size.

    ``directory`` is local, or a ``StoreDir`` (the driver checks a checkpoint under a URI without downloading it).
    """
    files = directory if isinstance(directory, StoreDir) else local_dir(directory)
    sizes = files.sizes("")
    if "train_state.json" not in sizes:
        raise CheckpointError(f"checkpoint file {files.display('train_state.json')} is missing (incomplete write)")
    try:
        state = TrainState(**json.loads(files.read_text("train_state.json")))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint file {files.display('train_state.json')} is unreadable: {exc}") from None
    if not isinstance(state.world_size, int) or state.world_size < 1:
        raise CheckpointError(f"checkpoint file {files.display('train_state.json')} is unreadable: "
                              f"world_size {state.world_size!r}")
    for rank in range(state.world_size):
        manifest = f"manifest_rank{rank}.json"
        if manifest not in sizes:
            raise CheckpointError(f"checkpoint file {files.display(manifest)} is missing: rank {rank} never "
                                  f"finished writing")
        try:
            listed = json.loads(files.read_text(manifest))["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint file {files.display(manifest)} is unreadable: {exc!r}") from None
        for rel, size in listed.items():
            if rel not in sizes:
                raise CheckpointError(f"checkpoint file {files.display(rel)} is missing")
            if sizes[rel] != size:
                raise CheckpointError(f"checkpoint file {files.display(rel)} has {sizes[rel]} bytes, expected "
                                      f"{size} (truncated?)")
    return state


def load(directory: Path, engine_g, engine_d, rank: int, world_size: int,
         private: bool = False) -> tuple[TrainState, Optional[dict], dict]:
    """Restore both engines in place; return (train state, this rank's RNG tensors, generator weights).

    A checkpoint of another world size is resharded (collective); the RNG tensors are then None: the
    ranks' streams no longer correspond to the saved ones. ``private``: ``directory`` is this rank's own
    download (a run under a URI), which no other rank reads.
    """
    directory = Path(directory)
    state = verify(directory)
    engines = [(name, engine) for name, engine in (("G", engine_g), ("D", engine_d)) if engine is not None]
    for name, _ in engines:
        if not (directory / name).is_dir():
            raise CheckpointError(f"checkpoint {directory} has no {name}/ directory: it was written by a run "
                                  f"{'without' if name == 'D' else 'with'} that network; start a new run "
                                  f"(train.init_from can take its generator)")
    resharded = state.world_size != world_size
    sources = {name: directory / name for name, _ in engines}
    if resharded:
        try:
            sources = reshard.engine_sources(directory, list(sources), TAG, rank, world_size, private)
        except (reshard.ReshardError, UnsafeCheckpoint) as exc:
            raise WorldSizeMismatch(
                f"checkpoint {directory} was written by {state.world_size} workers and could not be resharded "
                f"to this run's {world_size}: {exc}\nResume with scaling.num_workers={state.world_size}, or "
                f"start a new run from this one's generator: train.init_from={directory} --name NEW") from None
    for name, engine in engines:
        source = sources[name]
        try:
            with weights_only_loads(engine), reshard.universal_loading(engine, reshard.is_universal(source)):
                path, _ = engine.load_checkpoint(str(source), tag=TAG, load_optimizer_states=True,
                                                 load_lr_scheduler_states=True)
        except UnsafeCheckpoint:
            raise
        except Exception as exc:  # an unpickling error or a zip reader's complaint names no file; find it
            culprit = first_corrupt_archive(directory / name)
            where = (f"checkpoint file {culprit} is corrupt" if culprit
                     else f"DeepSpeed could not load {directory / name}")
            raise CheckpointError(f"{where}: {type(exc).__name__}: {exc}") from exc
        if path is None:
            raise CheckpointError(f"DeepSpeed could not load {source} (tag {TAG!r})")
    rng = None if resharded else _load_safetensors(directory / f"rng_rank{rank}.safetensors")
    generator = _load_safetensors(directory / "generator.safetensors")
    return state, rng, generator


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint file {path} is unreadable: {exc}") from None


# -- which checkpoint to resume --------------------------------------------------


def number(directory: Union[str, Path]) -> Optional[int]:
    """The step in a ``checkpoint_NNNNNN`` name, or None for another name."""
    return layout.checkpoint_step(Path(directory).name)


def earlier_names(name: str, siblings: list[str]) -> list[str]:
    """The ``checkpoint_NNNNNN`` names among ``siblings`` numbered below ``name``, newest first.

    Lower numbers are the earlier checkpoints: the loop never reports a checkpoint numbered at or below
    one Ray still tracks (see ``Trainer.save_checkpoint``). Newer siblings are never candidates: they are
    writes Ray did not commit.
    """
    limit = number(name)
    if limit is None:
        return []
    found = [(n, s) for s in siblings if (n := number(s)) is not None and n < limit]
    return [s for _, s in sorted(found, reverse=True)]


def earlier_checkpoints(directory: Path, siblings: Optional[list[str]] = None) -> list[Path]:
    """The earlier checkpoint directories beside ``directory``, newest first (see ``earlier_names``).

    ``siblings``: the directory names beside it, when they are not on the local disk yet (a run under a
    URI, whose checkpoints a resuming worker downloads one by one).
    """
    directory = Path(directory)
    if siblings is None:
        siblings = [p.name for p in directory.parent.iterdir() if p.is_dir()] if directory.parent.is_dir() else []
    return [directory.parent / name for name in earlier_names(directory.name, siblings)]


def check_readable(directory: Path, rank: Optional[int]) -> None:
    """Cheap structural check of the files ``rank`` will read: every DeepSpeed ``.pt`` file opens as a zip
    archive (``torch.save``'s format) and every safetensors header parses against the file's length.
    ``rank`` None: a rank the checkpoint has no RNG file for (a resharded resume to more workers).

    Catches garbage of the right size that ``verify`` cannot, without reading tensor data. Runs before
    DeepSpeed's load, which under ZeRO-3 is collective: a rank failing inside it would hang the others.
    """
    directory = Path(directory)
    for path in sorted(directory.glob("[GD]/**/*.pt")):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint file {path} is not a readable torch archive: {exc}") from None
    own = [directory / f"rng_rank{rank}.safetensors"] if rank is not None else []
    for path in (*own, directory / "generator.safetensors"):
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"checkpoint file {path} is unreadable: {exc}") from None


def first_corrupt_archive(directory: Path) -> Optional[Path]:
    """The first ``.pt`` file under ``directory`` whose zip structure or CRCs are wrong (reads every byte)."""
    for path in sorted(Path(directory).glob("**/*.pt")):
        try:
            with zipfile.ZipFile(path) as archive:
                if archive.testzip() is not None:
                    return path
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return path
    return None


def _refusals(tried: list[tuple[Path, str]]) -> str:
    return "\n".join(f"  - {reason}" for _, reason in tried)  # each reason names its checkpoint or file


def no_complete_checkpoint(tried: list[tuple[Path, str]]) -> CheckpointError:
    return CheckpointError(
        "no complete checkpoint to resume from (the run does not start from scratch on its own); tried:\n"
        f"{_refusals(tried)}\nEarlier checkpoints are kept per train.keep_checkpoints. Repair one of these, "
        "or start afresh under a new --name (train.init_from can take a generator from this run).")


def newest_complete(handed_over: Union[Path, StoreDir]) -> tuple[Any, TrainState, list[tuple[Any, str]]]:
    """The checkpoint a resume will start from, by manifests, sizes and pickles only (no tensor is read).

    Returns it, its train state, and the refused newer ones and why. Raises ``UnsafeCheckpoint`` at once, and
    ``CheckpointError`` listing every candidate when none is complete. A checkpoint under a URI
    (``StoreDir``) is judged by manifests and sizes, without downloading it; its pickles are checked by the
    workers once they have downloaded it.
    """
    if isinstance(handed_over, StoreDir):
        run = handed_over.parent()
        candidates: list = [handed_over, *(run.child(n) for n in earlier_names(handed_over.name, run.subdirs()))]
    else:
        candidates = [Path(handed_over), *earlier_checkpoints(handed_over)]
    tried: list[tuple[Any, str]] = []
    for candidate in candidates:
        try:
            if not isinstance(candidate, StoreDir):
                check_pickles(candidate)
            return candidate, verify(candidate), tried
        except _STOPS:
            raise
        except (CheckpointError, OSError) as exc:
            tried.append((candidate, str(exc)))
    raise no_complete_checkpoint(tried)


@dataclass
class Restored:
    directory: Path
    """The checkpoint that was loaded."""
    state: TrainState
    rng: dict
    generator: dict
    refused: list[tuple[Path, str]]
    """Newer checkpoints that were tried first, and why each was refused (every rank's reasons)."""


def _all_gather(obj: Any, world_size: int) -> list:
    if world_size == 1 or not dist.is_initialized():
        return [obj]
    out: list = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def _agree(error: Optional[CheckpointError], world_size: int) -> Optional[CheckpointError]:
    """Every rank's verdict on a candidate, merged: a refusal that stops the run wins (see ``_STOPS``), then
    any other refusal."""
    kind = None if error is None else next((i for i, stop in enumerate(_STOPS) if isinstance(error, stop)),
                                           len(_STOPS))
    verdict = None if error is None else (kind, str(error))
    verdicts = [v for v in _all_gather(verdict, world_size) if v is not None]
    if not verdicts:
        return None
    first = min(kind for kind, _ in verdicts)
    if first < len(_STOPS):
        return _STOPS[first](next(message for kind, message in verdicts if kind == first))
    return CheckpointError("; ".join(dict.fromkeys(message for _, message in verdicts)))


def load_newest_complete(handed_over: Path, engine_g, engine_d, rank: int, world_size: int,
                         downloads: Optional[CheckpointDownloads] = None) -> Restored:
    """Load ``handed_over``, or the newest complete checkpoint before it; collective (every rank calls it).

    ``downloads``: the run is kept under a URI; ``handed_over`` and its siblings are local paths that each
    candidate is downloaded to when it is tried (the first only, unless it is refused).

    Rank 0 lists the candidates and every rank takes its list, so all walk the same ones. Each
    candidate is voted on twice: after the cheap checks (pickled code, manifests, sizes, archive structure),
    before anything is loaded, and after loading. A rank that finds a fault refuses the candidate for all of
    them, so no two ranks ever resume from different checkpoints. Pickled code or a world-size mismatch stops
    at once.
    """
    handed_over = Path(handed_over)
    siblings = downloads.siblings() if downloads is not None and rank == 0 else None
    names = [p.name for p in (handed_over, *earlier_checkpoints(handed_over, siblings))] if rank == 0 else None
    if world_size > 1 and dist.is_initialized():
        box = [names]
        dist.broadcast_object_list(box, src=0)
        names = box[0]
    # By name, beside this rank's own handed-over path: under a URI each rank downloads into its own directory.
    tried: list[tuple[Path, str]] = []
    for candidate in (handed_over.parent / name for name in names):
        error = None
        try:
            if downloads is not None:
                downloads.fetch(candidate)
            check_pickles(candidate)
            written_by = verify(candidate).world_size
            check_readable(candidate, rank if rank < written_by else None)
        except CheckpointError as exc:
            error = exc
        except OSError as exc:  # unreadable, not corrupt; but a rank must not leave the others waiting to vote
            error = CheckpointError(f"checkpoint {candidate} could not be read: {exc}")
        if (error := _agree(error, world_size)) is None:
            try:
                state, rng, generator = load(candidate, engine_g, engine_d, rank, world_size,
                                             private=downloads is not None)
            except CheckpointError as exc:
                error = exc
            error = _agree(error, world_size)  # every rank is done loading: a resharded copy may go
            if rank == 0:
                reshard.discard(candidate)
            if error is None:
                return Restored(candidate, state, rng, generator, tried)
        if isinstance(error, _STOPS):
            raise error
        tried.append((candidate, str(error)))
    raise no_complete_checkpoint(tried)
