"""Comparisons of DeepSpeed replicas across the ranks of a real process group (for the Ray tests)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from distgan.runtime import engines


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


def full_training_state(engine) -> dict[str, torch.Tensor]:
    """Every parameter and its Adam moments, whole (fp32), however ZeRO partitions them; collective under
    ZeRO 1-3 (every rank calls it). Keys: ``<parameter name>.param|exp_avg|exp_avg_sq``."""
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    out = {}
    for name, p in engine.module.named_parameters():
        whole = safe_get_full_fp32_param(p)
        if whole is None:  # ZeRO-0: a torch optimizer over the module's own parameters
            out[f"{name}.param"] = p.detach().float().clone()
            for key in ("exp_avg", "exp_avg_sq"):
                out[f"{name}.{key}"] = engine.optimizer.state[p][key].detach().float().clone()
            continue
        out[f"{name}.param"] = whole.detach().float().clone()
        for key in ("exp_avg", "exp_avg_sq"):
            out[f"{name}.{key}"] = safe_get_full_optimizer_state(p, key).detach().float().clone()
    return out
