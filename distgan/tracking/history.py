"""``history.jsonl``: one row per start, restart, resize, preemption and finish of a run, saying why.

metrics.jsonl says how training went; this file says what happened to the run around it: when each attempt
of the worker group started, from which step, at which width, and what ended the one before. Ray Train
restarts a group without telling the new one why, so the reason of a restart is read from what is known
at its start: the width the checkpoint was written by, and whether the last attempt recorded a preemption.
Rank 0 appends; a row is one JSON object with ``time`` (epoch seconds), ``event``, ``step``,
``world_size``, ``why`` and ``launch`` (when the ``distgan train`` that made it began: the attempts of one
command share it, so a new command is told from a restart).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from distgan.tracking.jsonl import read_jsonl

FILE = "history.jsonl"

STARTED, RESUMED, RESIZED, PREEMPTED, FINISHED = "started", "resumed", "resized", "preempted", "finished"


def read(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / FILE
    # Rows are appended as metrics records are: a last row cut short by a crash is left out alike.
    return read_jsonl(path) if path.is_file() else []


def append(run_dir: Path, event: str, step: int, world_size: int, why: str, launch: float) -> Path:
    path = Path(run_dir) / FILE
    row = {"time": round(time.time(), 3), "event": event, "step": step, "world_size": world_size, "why": why,
           "launch": launch}
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return path


def workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


def attempt_start(run_dir: Path, step: int, world_size: int, written_by: Optional[int],
                  launch: float) -> tuple[str, str]:
    """(event, why) of an attempt of the command begun at ``launch``, starting at ``step`` with ``world_size``
    workers from a checkpoint written by ``written_by`` workers (None: no checkpoint)."""
    if written_by is None:
        return STARTED, f"new run on {workers(world_size)}"
    rows = read(run_dir)
    last = rows[-1] if rows else {}
    widths = f"from {written_by} to {workers(world_size)}"
    if last.get("launch") != launch:
        # Another command chose the width (its scaling.num_workers, or an elastic range and what it found):
        # nothing was lost, whichever way it went.
        if world_size == written_by:
            return RESUMED, f"restarted on {workers(world_size)} by a new distgan train"
        change = "shrunk" if world_size < written_by else "grown"
        return RESIZED, f"{change} {widths} by a new distgan train"
    if last.get("event") == PREEMPTED:
        cause = "after a preemption notice"
    else:
        cause = "after a worker failure"
    if world_size < written_by:
        return RESIZED, f"shrunk {widths} {cause}: a worker or node was lost"
    if world_size > written_by:  # a wider group within one command is Ray Train's own resize, not a failure
        return RESIZED, f"grown {widths} by Ray Train's resize: capacity returned"
    return RESUMED, f"restarted on {workers(world_size)} {cause}"
