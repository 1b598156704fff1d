"""Where the time to the first training step goes: wall-clock marks from the driver and rank 0.

The driver marks when ``distgan train`` was called and when Ray was up; rank 0
adds its own marks as the worker sets up (data, models, each engine, the
evaluator, the restored checkpoint) and the end of the first step, then writes
``startup.json`` into the run directory once. Marks are epoch seconds
(``time.time``), comparable across processes of one machine; on a cluster the
driver-to-worker gap includes the nodes' clock offset.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

FILE = "startup.json"
LABELS = {
    "ray_ready": "start or join Ray",
    "worker_start": "start the worker group (Ray Train controller, placement, process group)",
    "data": "load the data",
    "models": "build G and D (and G_ema)",
    "engine_g": "G's DeepSpeed engine (first use: DeepSpeed import, op build)",
    "engine_d": "D's DeepSpeed engine",
    "evaluator": "prepare evaluation (feature network, real statistics)",
    "restored": "restore the checkpoint (if any) and open trackers",
    "first_step": "the first training step",
}
"""Each mark names the phase that ends at it, in order."""


class StartupClock:
    def __init__(self, marks: Optional[dict[str, float]] = None):
        self.marks: dict[str, float] = dict(marks or {})
        self.written = False

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def first_step_done(self, run_dir: Optional[Path]) -> bool:
        """Mark the end of the first step and write ``startup.json`` into ``run_dir`` (rank 0 passes one, the
        others None); only the first call does anything. Returns whether it wrote the file."""
        if self.written:
            return False
        self.written = True
        self.mark("first_step")
        if run_dir is None:
            return False
        path = Path(run_dir) / FILE
        tmp = path.with_name(FILE + ".tmp")
        tmp.write_text(json.dumps({"marks": self.marks, "phases": phases(self.marks)}, indent=2))
        os.replace(tmp, path)
        return True


def phases(marks: dict[str, float]) -> dict[str, float]:
    """Seconds spent in each phase that has both its start and its end mark."""
    order = ["start", *LABELS]
    present = [name for name in order if name in marks]
    return {name: marks[name] - marks[prev] for prev, name in zip(present, present[1:])}


def format_breakdown(marks: dict[str, float]) -> str:
    spent = phases(marks)
    total = marks.get("first_step", 0.0) - marks.get("start", marks.get("worker_start", 0.0))
    lines = [f"first training step {total:.1f} s after start:"]
    lines += [f"  {seconds:6.1f} s  {LABELS[name]}" for name, seconds in spent.items()]
    return "\n".join(lines)
