"""Why a checkpoint is refused: the errors of ``distgan.persist`` that callers tell apart."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, corrupt or does not fit this run."""


class WorldSizeMismatch(CheckpointError):
    """A checkpoint written by another number of workers: whole, but not loadable by this run.

    Not a reason to fall back: the run's earlier checkpoints have the same world size.
    """


class UnsafeCheckpoint(CheckpointError):
    """A checkpoint file whose pickle names code to run: refused without unpickling it, and the run stops.

    Not a reason to fall back either: neither distgan nor DeepSpeed writes such a file, so something else
    wrote into the run directory. Quietly resuming an older checkpoint from the same directory would hide
    that, and Ray deletes the refused checkpoint (the evidence) once it ages out of ``train.keep_checkpoints``.
    """
