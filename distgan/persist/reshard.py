"""Resuming a checkpoint with another worker count: where each engine's state is read from.

What a DeepSpeed checkpoint holds per rank decides what is needed:

* fp32 or bf16 at ZeRO-0 saves the whole optimizer in ``mp_rank_00_model_states.pt`` and nothing per
  rank, so DeepSpeed loads it at any world size as it is.
* ZeRO 1-3 save each rank's partition of the optimizer (and, at ZeRO-3, of the parameters) in
  ``*_optim_states.pt`` files, one per rank. Rank 0 converts them with DeepSpeed's own converter
  (``deepspeed.checkpoint.ds_to_universal``) into a *universal* checkpoint, one file per parameter and
  optimizer quantity, which every rank then loads with DeepSpeed's universal loading switched on for
  that one load; each takes its own partition of the new world size.

The conversion is written beside the run's checkpoints, under ``.resharded/checkpoint_NNNNNN/{G,D}``
(all ranks read it, as they read the checkpoint itself; under a URI each rank converts its own download),
made afresh on every resharded resume, never trusted from an earlier one, and removed once every rank has
loaded it. Nothing is unpickled in full on the way: the converter's and the universal loader's
``torch.load`` calls are made weights-only, allowing DeepSpeed's own classes only
(``distgan.persist.safety``), after the static check of the source files every
resume already does.

The other per-rank parts of the training state are the caller's: the data position is converted by
the sampler (``ShardedBatches.load_state_dict``), and the RNG streams start afresh from the seed, rank
and step (``worker.Trainer.restore``). The learning rates need nothing: each is a function of the step
(``distgan.runtime.lr_schedule``), set on the engines after any restore, so whatever lr the universal
checkpoint's param groups carry is overwritten. A resharded run is a correct continuation, not a bit-exact one:
another worker count is another global batch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.distributed as dist

from distgan.persist.safety import check_pickles_under, deepspeed_classes

RESHARDED = ".resharded"


class ReshardError(RuntimeError):
    """The conversion of a checkpoint to another worker count failed."""


def partitioned(engine_dir: Path, tag: str) -> bool:
    """Whether the engine's checkpoint holds per-rank optimizer partitions (ZeRO 1-3)."""
    return any((Path(engine_dir) / tag).glob("*optim_states.pt"))


@contextlib.contextmanager
def weights_only_torch_load() -> Iterator[None]:
    """Every ``torch.load`` in this process reads weights-only, DeepSpeed's own classes allowed.

    DeepSpeed's converter and universal loader call ``torch.load`` directly with weights-only loading
    turned off, not through the checkpoint engine that ``distgan.persist.safety.weights_only_loads`` shadows.
    Both run in the training process, on one thread, while nothing else loads.
    """
    original = torch.load
    classes = deepspeed_classes()

    def load(*args, **kwargs):
        kwargs["weights_only"] = True
        with torch.serialization.safe_globals(classes):
            return original(*args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def to_universal(engine_dir: Path, tag: str, out: Path) -> None:
    """Convert ``engine_dir/tag`` into a universal checkpoint at ``out/tag`` (replacing what is there)."""
    from deepspeed.checkpoint import ds_to_universal  # DeepSpeed loads only where a checkpoint is converted

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    args = argparse.Namespace(input_folder=str(engine_dir / tag), output_folder=str(tmp / tag),
                              num_extract_workers=1, num_merge_workers=1, keep_temp_folder=False, strict=True,
                              # distgan's checkpoints carry no universal-checkpoint description; the
                              # converter's default one fits modules without tensor or pipeline parallelism
                              inject_missing_state=True)
    log = io.StringIO()  # the converter prints its progress bars; only a failure needs them
    try:
        with weights_only_torch_load(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            ds_to_universal.main(args)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ReshardError(f"DeepSpeed's universal-checkpoint conversion of {engine_dir} failed: "
                           f"{type(exc).__name__}: {exc}\n{log.getvalue()[-2000:]}") from exc
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def engine_sources(directory: Path, names: list[str], tag: str, rank: int, world_size: int,
                   private: bool = False) -> dict[str, Path]:
    """Where each engine of ``names`` loads from when resuming ``directory`` at another world size.

    Collective: on a file system all ranks read, rank 0 converts the partitioned engines while the others
    wait; with ``private`` (each rank resumes its own download of the checkpoint: a run under a URI, whose
    ranks may be on other nodes) every rank converts its own copy. Every rank gets the same verdict.
    Returns ``{name: directory}``; a directory under ``.resharded`` is a universal checkpoint.
    """
    out_root = Path(directory).parent / RESHARDED / Path(directory).name
    sources = {name: Path(directory) / name for name in names}
    error: Optional[str] = None
    if rank == 0 or private:
        try:
            for name in names:
                if partitioned(sources[name], tag):
                    to_universal(sources[name], tag, out_root / name)
            check_pickles_under(out_root)  # what was written is what the converter meant to write
        except Exception as exc:
            error = str(exc)
    if world_size > 1 and dist.is_initialized():
        errors: list[Optional[str]] = [None] * world_size
        dist.all_gather_object(errors, error)
        error = next((e for e in errors if e is not None), None)
    if error is not None:
        raise ReshardError(error)
    return {name: out_root / name if partitioned(path, tag) else path for name, path in sources.items()}


def discard(directory: Path) -> None:
    """Remove the conversion of ``directory`` once every rank has loaded it (rank 0, after the vote)."""
    root = Path(directory).parent / RESHARDED
    shutil.rmtree(root / Path(directory).name, ignore_errors=True)
    with contextlib.suppress(OSError):
        root.rmdir()  # only when empty


def is_universal(source: Path) -> bool:
    return RESHARDED in Path(source).parts


@contextlib.contextmanager
def universal_loading(engine, universal: bool) -> Iterator[None]:
    """DeepSpeed's universal loading on ``engine`` for one ``load_checkpoint`` call.

    The engine reads the switch from its config at load time (``DeepSpeedEngine.load_universal_checkpoint``);
    it is set only around the load, so the engine's own later checkpoints are ordinary ones.
    """
    if not universal:
        yield
        return
    previous = engine._config.load_universal_checkpoint
    engine._config.load_universal_checkpoint = True
    try:
        with weights_only_torch_load():
            yield
    finally:
        engine._config.load_universal_checkpoint = previous
