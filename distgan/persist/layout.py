"""Names in a storage that more than one module checks or resolves: a run's, sweep's or job's directory
(``--name``), and inside a run Ray Train's ``checkpoint_NNNNNN`` directories, which a sweep's trial keeps
under ``attempts/attempt_NNN`` (one per start of its worker group). Imports nothing heavy: the submit path
checks a name without torch."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterable, Optional, Union

from distgan.config import ConfigError

CHECKPOINT = re.compile(r"checkpoint_(\d+)")
ATTEMPTS = "attempts"


def checkpoint_step(name: Union[str, PurePosixPath]) -> Optional[int]:
    """The step in a ``checkpoint_NNNNNN`` name (the last component of a path), or None for another name."""
    match = CHECKPOINT.fullmatch(PurePosixPath(str(name)).name)
    return int(match.group(1)) if match else None


def newest_checkpoint(names: Iterable[str]) -> Optional[str]:
    """The name of the highest step among ``names`` (by number: a step past 999999 widens the name)."""
    return max((n for n in names if checkpoint_step(n) is not None), key=checkpoint_step, default=None)


def check_name(name: str) -> None:
    """``--name`` names one directory in the storage: a run's, a sweep's or a job's."""
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: use a plain directory name")
