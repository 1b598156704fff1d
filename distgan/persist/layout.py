"""Names inside a run directory that more than one reader resolves: Ray Train's ``checkpoint_NNNNNN``
directories, which a sweep's trial keeps under ``attempts/attempt_NNN`` (one per start of its worker group)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterable, Optional, Union

CHECKPOINT = re.compile(r"checkpoint_(\d+)")
ATTEMPTS = "attempts"


def checkpoint_step(name: Union[str, PurePosixPath]) -> Optional[int]:
    """The step in a ``checkpoint_NNNNNN`` name (the last component of a path), or None for another name."""
    match = CHECKPOINT.fullmatch(PurePosixPath(str(name)).name)
    return int(match.group(1)) if match else None


def newest_checkpoint(names: Iterable[str]) -> Optional[str]:
    """The name of the highest step among ``names`` (by number: a step past 999999 widens the name)."""
    return max((n for n in names if checkpoint_step(n) is not None), key=checkpoint_step, default=None)
