"""A single-process ``distgan.runtime.loop.Session`` for in-process tests of the loop (no Ray).

Reports are kept in memory and reported checkpoint directories are copied
into ``store``, the way Ray Train persists them.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator, Optional

import torch


class LocalSession:
    rank = 0
    world_size = 1
    use_gpu = False
    streamer = None  # streamed data is decoded by a thread of this process

    def __init__(self, store: Path, resume_from: Optional[Path] = None,
                 device: torch.device = torch.device("cpu")):
        self.device = device
        self.use_gpu = device.type == "cuda"
        self.store = Path(store)
        self.resume_from = resume_from
        self.reports: list[dict] = []
        self.checkpoints: list[Path] = []
        self.notice_at: Optional[int] = None
        """The call of ``preemption_notice`` (1-based) from which on it reports a preempted node."""
        self.notice_calls = 0

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Optional[Path]]:
        yield self.resume_from

    def report(self, metrics: dict, checkpoint_dir: Optional[Path] = None, name: Optional[str] = None) -> None:
        self.reports.append(dict(metrics))
        if checkpoint_dir is not None:
            dest = self.store / name
            shutil.copytree(checkpoint_dir, dest)
            self.checkpoints.append(dest)

    def preemption_notice(self) -> Optional[str]:
        self.notice_calls += 1
        if self.notice_at is not None and self.notice_calls >= self.notice_at:
            return "a node being preempted"
        return None
