"""Saving and restoring the full training state, and nothing else.

A checkpoint is one directory that every rank writes a part of (Ray Train
merges the ranks' directories in storage):

    G/, D/                       DeepSpeed checkpoints of each engine (tag "state"); no D/ for a run
                                 without a discriminator (the PSNR stage of super-resolution)
    generator.safetensors/.json  G_ema (or G) weights in fp32, also a usable export
    train_state.json             step, images seen, data position, world size (rank 0)
    rng_rank{r}.safetensors      each rank's torch and latent RNG states
    manifest_rank{r}.json        the files rank r wrote, with their sizes

The manifests are written last: a checkpoint is complete only when all
``world_size`` manifests are there and every file they list has its size.
Anything else (a truncated shard, a rank that died mid-write) is refused with
the file named, rather than half-loaded.

Keeping all of this in one module leaves room for resharding checkpoints to a
new world size (DeepSpeed universal checkpoints) without touching the loop.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file

TAG = "state"


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, corrupt or does not fit this run."""


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
    from distgan.export import save_generator

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    engine_g.save_checkpoint(str(directory / "G"), tag=TAG, save_latest=False)
    if engine_d is not None:
        engine_d.save_checkpoint(str(directory / "D"), tag=TAG, save_latest=False)
    save_file({k: v.contiguous() for k, v in rng.items()}, str(directory / f"rng_rank{rank}.safetensors"))
    if rank == 0:
        module, metadata = generator_export
        save_generator(directory, module, metadata)
        write_json_atomic(directory / "train_state.json", asdict(state))
    files = {str(p.relative_to(directory)): p.stat().st_size
             for p in sorted(directory.rglob("*")) if p.is_file() and not p.name.startswith("manifest_")}
    write_json_atomic(directory / f"manifest_rank{rank}.json", {"rank": rank, "files": files})


def verify(directory: Path, world_size: int) -> TrainState:
    """Check that the checkpoint is complete and was written by ``world_size`` ranks."""
    directory = Path(directory)
    state_file = directory / "train_state.json"
    if not state_file.is_file():
        raise CheckpointError(f"checkpoint {directory} has no train_state.json (incomplete write)")
    try:
        state = TrainState(**json.loads(state_file.read_text()))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint file {state_file} is unreadable: {exc}") from None
    if state.world_size != world_size:
        raise CheckpointError(
            f"checkpoint {directory} was written by {state.world_size} workers but this run has {world_size}; "
            f"resume with scaling.num_workers={state.world_size}")
    for rank in range(world_size):
        manifest = directory / f"manifest_rank{rank}.json"
        if not manifest.is_file():
            raise CheckpointError(f"checkpoint {directory} lacks {manifest.name}: rank {rank} never finished writing")
        for rel, size in json.loads(manifest.read_text())["files"].items():
            path = directory / rel
            if not path.is_file():
                raise CheckpointError(f"checkpoint file {path} is missing")
            if path.stat().st_size != size:
                raise CheckpointError(
                    f"checkpoint file {path} has {path.stat().st_size} bytes, expected {size} (truncated?)")
    return state


def load(directory: Path, engine_g, engine_d, rank: int, world_size: int) -> tuple[TrainState, dict, dict]:
    """Restore both engines in place; return (train state, this rank's RNG tensors, generator weights)."""
    directory = Path(directory)
    state = verify(directory, world_size)
    for name, engine in (("G", engine_g), ("D", engine_d)):
        if engine is None:
            continue
        if not (directory / name).is_dir():
            raise CheckpointError(f"checkpoint {directory} has no {name}/ directory: it was written by a run "
                                  f"{'without' if name == 'D' else 'with'} that network; start a new run "
                                  f"(train.init_from can take its generator)")
        path, _ = engine.load_checkpoint(str(directory / name), tag=TAG, load_optimizer_states=True,
                                         load_lr_scheduler_states=True)
        if path is None:
            raise CheckpointError(f"DeepSpeed could not load {directory / name} (tag {TAG!r})")
    rng = load_file(str(directory / f"rng_rank{rank}.safetensors"))
    generator = load_file(str(directory / "generator.safetensors"))
    return state, rng, generator
