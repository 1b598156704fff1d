"""Memory of one worker, for the logged metrics: its process's resident size and, on a GPU, what torch holds.

A GAN run that grows out of memory usually does so slowly (a cache, a leak in a data pipeline, a larger
evaluation batch), so the numbers are logged with every record rather than only reported at a crash.
"""

from __future__ import annotations

from typing import Union

import psutil
import torch

MB = 2**20


def worker_memory(device: Union[str, torch.device]) -> dict[str, float]:
    """``rss_mb`` of this process; on a CUDA device also ``gpu_mem_mb`` (allocated by torch now) and
    ``gpu_max_mem_mb`` (the peak since the process started: what sizes the GPU a run needs)."""
    device = torch.device(device)
    values = {"rss_mb": psutil.Process().memory_info().rss / MB}
    if device.type == "cuda":
        values["gpu_mem_mb"] = torch.cuda.memory_allocated(device) / MB
        values["gpu_max_mem_mb"] = torch.cuda.max_memory_allocated(device) / MB
    return values
