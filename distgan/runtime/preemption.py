"""A preemption notice (SIGTERM) turned into a checkpoint at once, agreed by every rank at the same step.

Spot VMs and Kubernetes send SIGTERM some seconds before they kill. The signal reaches one worker, or the
workers of one node, at any moment; a checkpoint is collective, so the ranks first agree that one is due.
Each step every rank contributes whether it was told (``Watch.poll``) to an all-reduce that finishes in the
background and is read one step later: no rank waits for it, yet all of them read the same answer at the
same step. The run then checkpoints at that step and stops with ``Preempted``, which Ray Train treats as a
worker failure: the group restarts from that checkpoint, at another width if the cluster shrank. So a
preemption loses no step, and costs one restart.

The notice itself is process-wide state set from the signal handler (``distgan.launch.preemption`` installs
it in every Ray worker process); the loop knows nothing of signals or Ray.
"""

from __future__ import annotations

import datetime
import threading
from typing import Optional

import torch
import torch.distributed as dist

_notice = threading.Event()
_watching = threading.Event()


class Preempted(RuntimeError):
    """The run checkpointed because a worker was told to stop; a restart resumes from that checkpoint."""


def notify() -> bool:
    """Record a preemption notice; True when a training loop of this process will act on it (otherwise the
    caller should stop the process the usual way)."""
    if not _watching.is_set():
        return False
    _notice.set()
    return True


def noticed() -> bool:
    return _notice.is_set()


class Watch:
    """Whether any rank was told to stop, read by every rank at the same step (one step after the telling).

    ``group``: the process group the flags travel on. A CPU (gloo) group even on GPU workers: the flag is a
    host value, and a device all-reduce would make the host wait for the GPU every step.
    """

    def __init__(self, world: int, timeout_s: float):
        self.group: Optional[dist.ProcessGroup] = None
        if world > 1:
            # Collective: every rank builds its Watch at the same point of the loop's set-up.
            self.group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
        self.pending: Optional[tuple[dist.Work, torch.Tensor]] = None
        _notice.clear()  # a notice for an earlier attempt of this process is not this one's
        _watching.set()

    def poll(self) -> bool:
        """Called once per step by every rank: whether the flags sent at the previous call say stop."""
        told = False
        if self.pending is not None:
            work, flag = self.pending
            work.wait()
            told = bool(flag.item())
        flag = torch.tensor([int(_notice.is_set())], dtype=torch.int32)
        if self.group is None:
            self.pending = None
            return told or bool(flag.item())
        self.pending = (dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.group, async_op=True), flag)
        return told

    def close(self) -> None:
        """Finish the collective in flight (every rank calls this at the same point) and stop watching."""
        if self.pending is not None:
            self.pending[0].wait()
            self.pending = None
        _watching.clear()
