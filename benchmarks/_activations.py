"""Part 2 of ``benchmarks/memory.py``: activation memory of RRDBNet and the largest HR crop that fits.

Activation bytes are what autograd saves for backward in one forward (``saved_tensors_hooks``,
parameters excluded, shared storages counted once), measured on CPU at batch 1 and fitted linearly in HR
pixels. Where CUDA is available, ``cuda_check`` measures the true peak of one forward+backward instead.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

GiB = 2**30
RRDB_PUBLISHED = {"blocks": 23, "g_width": 64, "growth": 32, "scale": 4}
"""ESRGAN's generator (Wang et al., 2018): 16.7M parameters."""
RRDB_QUICK = {"blocks": 4, "g_width": 32, "growth": 16, "scale": 4}
FIT_LR_SIDES = (8, 12, 16)
"""Fit on the first two LR crops, check the fit on the third (an extrapolation)."""




class SavedTensorBytes:
    """Bytes of the distinct storages autograd saves for backward inside the ``with`` block.

    Storages listed in ``exclude`` (pass the parameters: convs save their weight) are not counted. Saved
    tensors stay alive with the graph, so keep the forward's output until reading ``nbytes`` and run one
    forward per context: a freed storage's address could be reused and then be missed.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()):
        self.exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self.storages: dict[int, int] = {}

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr and ptr not in self.exclude:
                self.storages.setdefault(ptr, storage.nbytes())
        return t

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())


def rrdb_model_config(quick: bool, checkpointing: bool):
    from distgan.config import ModelConfig

    return ModelConfig(family="rrdb", checkpointing=checkpointing, **(RRDB_QUICK if quick else RRDB_PUBLISHED))


def saved_bytes(net: nn.Module, lr_side: int, dtype: torch.dtype) -> int:
    x = torch.randn(1, 3, lr_side, lr_side, dtype=dtype)
    with SavedTensorBytes(exclude=net.parameters()) as saved:
        out = net(x)
    del out
    return saved.nbytes


def activation_fit(quick: bool, precision: str, checkpointing: bool) -> dict:
    """bytes = a + b * HR pixels, fitted on two LR crops and checked on a third."""
    from distgan.runtime.engines import DTYPES
    from distgan.models import build_generator

    model_cfg = rrdb_model_config(quick, checkpointing)
    torch.manual_seed(0)
    net = build_generator(model_cfg, (3, 32, 32)).to(DTYPES[precision]).train()
    scale = model_cfg.scale
    pixels = [(s * scale) ** 2 for s in FIT_LR_SIDES]
    measured = [saved_bytes(net, s, DTYPES[precision]) for s in FIT_LR_SIDES]
    slope = (measured[1] - measured[0]) / (pixels[1] - pixels[0])
    intercept = measured[0] - slope * pixels[0]
    predicted = intercept + slope * pixels[2]
    return {"precision": precision, "checkpointing": checkpointing, "hr_sides": [s * scale for s in FIT_LR_SIDES],
            "bytes": measured, "bytes_per_hr_pixel": slope, "intercept": intercept,
            "check_relative_error": abs(predicted - measured[2]) / measured[2]}


def largest_crop(budget: float, state: int, fit: dict, scale: int) -> int:
    """Largest square HR side, a multiple of ``scale``, with state + activations <= budget; 0 when none fits."""
    room = budget - state - fit["intercept"]
    if room <= 0:
        return 0
    return int(math.isqrt(int(room / fit["bytes_per_hr_pixel"])) // scale * scale)


def crop_table(rows: list[dict], fits: list[dict], budgets: list[float], scale: int) -> list[dict]:
    """Per precision, checkpointing and ZeRO stage: RRDB's model state per worker (the largest world measured,
    2 by default) and the largest crop at each budget."""
    out = []
    rrdb = [r for r in rows if r["model"] == "rrdb"]
    for fit in fits:
        mine = [r for r in rrdb if r["precision"] == fit["precision"]]
        if not mine:
            continue
        world = max(r["workers"] for r in mine)
        for r in sorted((r for r in mine if r["workers"] == world), key=lambda r: r["stage"]):
            state = r["total"] + r["buckets"]
            out.append({"precision": fit["precision"], "checkpointing": fit["checkpointing"], "stage": r["stage"],
                        "workers": world, "state_bytes": r["total"], "bucket_bytes": r["buckets"],
                        "crops": {f"{b:g}": largest_crop(b * GiB, state, fit, scale) for b in budgets},
                        "crops_without_buckets": {f"{b:g}": largest_crop(b * GiB, r["total"], fit, scale)
                                                  for b in budgets}})
    return out


def _peak_of_step(net: nn.Module, x: torch.Tensor) -> int | None:
    try:
        net(x).float().square().mean().backward()
    except torch.cuda.OutOfMemoryError:
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def cuda_peak(quick: bool, precision: str, checkpointing: bool, hr_side: int, fit: dict) -> dict:
    """One forward+backward of G alone on the GPU at ``hr_side``: measured peak vs params + grads + saved."""
    from distgan.runtime.engines import DTYPES
    from distgan.models import build_generator

    model_cfg = rrdb_model_config(quick, checkpointing)
    dtype, lr = DTYPES[precision], hr_side // model_cfg.scale
    torch.cuda.empty_cache()
    net = build_generator(model_cfg, (3, hr_side, hr_side)).to("cuda", dtype).train()
    param_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    torch.cuda.reset_peak_memory_stats()
    peak = _peak_of_step(net, torch.randn(1, 3, lr, lr, device="cuda", dtype=dtype))
    del net
    torch.cuda.empty_cache()
    estimate = 2 * param_bytes + fit["intercept"] + fit["bytes_per_hr_pixel"] * hr_side**2
    return {"precision": precision, "checkpointing": checkpointing, "hr_side": hr_side,
            "max_memory_allocated": peak, "estimate_params_grads_saved": estimate}


def cuda_check(args, fits: list[dict], crops: list[dict]) -> list[dict]:
    """At each configuration's crop for --budget-gib (ZeRO-2's, else the first stage measured): the measured
    peak of G's forward+backward on this GPU."""
    print(f"\nCUDA ({torch.cuda.get_device_name()}): torch.cuda.max_memory_allocated of one forward+backward of G "
          f"alone at the crop for {args.budget_gib:g} GiB, against params + grads + saved activations")
    checks = []
    device_bytes = torch.cuda.get_device_properties(0).total_memory
    if args.budget_gib * GiB > device_bytes:
        print(f"  skipped: the budget exceeds this GPU's {device_bytes / GiB:.1f} GiB; pass a smaller --budget-gib")
        return checks
    for fit in fits:
        mine = [c for c in crops if (c["precision"], c["checkpointing"]) == (fit["precision"], fit["checkpointing"])]
        crop = next((c for c in mine if c["stage"] == 2), mine[0] if mine else None)
        side = crop["crops"][f"{args.budget_gib:g}"] if crop else 0
        if side <= 0:
            continue
        check = cuda_peak(args.quick, fit["precision"], fit["checkpointing"], side, fit)
        checks.append(check)
        peak = check["max_memory_allocated"]
        print(f"  {fit['precision']:<5} ckpt={str(fit['checkpointing']).lower():<5} ZeRO-{crop['stage']} HR {side:>5}: "
              f"max_memory_allocated {'OOM' if peak is None else f'{peak / GiB:.2f} GiB'}, "
              f"estimate {check['estimate_params_grads_saved'] / GiB:.2f} GiB")
    return checks
