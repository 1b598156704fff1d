"""Comparisons of DeepSpeed replicas across the ranks of a real process group (for the Ray tests)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from distgan import engines


def flat(engine, buffers: bool = False) -> torch.Tensor:
    """Parameters (and, for replica checks, buffers: G's BatchNorm statistics move in every forward)."""
    with engines.whole_parameters(engine) as module:
        tensors = [p.detach().float().reshape(-1) for p in module.parameters()]
        if buffers:
            tensors += [b.detach().float().reshape(-1) for b in module.buffers() if b.is_floating_point()]
    return torch.cat(tensors)


def max_rank_difference(x: torch.Tensor) -> float:
    gathered = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, x)
    return max(float((g - gathered[0]).abs().max()) for g in gathered)
