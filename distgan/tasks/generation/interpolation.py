"""Latent walks: ``distgan sample --interpolate KxSTEPS``, strips of images between latents, or one looping
animation through them.

``K`` keyframe latents are drawn as ``distgan sample --n K`` draws them (``torch.randn`` from one generator
seeded with ``--seed``), so a walk's keyframes are exactly the plain command's first K samples. Row ``i`` goes
from keyframe ``i`` to keyframe ``i + 1`` (the last row back to the first) in ``STEPS`` frames, both ends
included: read as strips, each row starts where the one above ended; played with each row's last frame
dropped, the rows make one seamless loop.

Where the walk goes is what each family's latent space makes sensible. A style-based generator walks in W
(after truncation), linearly, as StyleGAN's perceptual path length does: W is what its synthesis network is
trained to be smooth in, and a conditional one's keyframes may differ in class (W carries it). Any other
generator walks in Z along the great circle (slerp, White 2016): Gaussian latents of high dimension lie near a
sphere of radius sqrt(dim), and the straight line between two of them dips inside it, through latents G rarely
saw in training; a conditional one holds the row's starting class along the row.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from distgan.tasks.generation.sampling import is_style_based, truncated_ws

PARALLEL = 1e-6
"""Below this sine of their angle two latents are taken as parallel (or opposite: any great circle joins
those) and slerp falls back to the straight line, rather than divide by about zero."""


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of row vectors ``a`` and ``b`` (..., D) at fractions ``t`` (T,): (..., T, D).
    Norms are interpolated linearly, directions along the great circle between them."""
    t = t.to(a.dtype)[:, None]
    a, b = a[..., None, :], b[..., None, :]
    norm_a, norm_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    unit_a, unit_b = a / norm_a, b / norm_b
    omega = torch.arccos((unit_a * unit_b).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    straight = sin.abs() < PARALLEL
    safe = torch.where(straight, torch.ones_like(sin), sin)
    direction = torch.where(straight, (1 - t) * unit_a + t * unit_b,
                            (torch.sin((1 - t) * omega) * unit_a + torch.sin(t * omega) * unit_b) / safe)
    return direction * ((1 - t) * norm_a + t * norm_b)


def fractions(steps: int) -> torch.Tensor:
    """``steps`` fractions from 0 to 1, both ends included."""
    if steps < 2:
        raise ValueError(f"a walk needs at least 2 steps (its two ends), got {steps}")
    return torch.linspace(0.0, 1.0, steps)


@torch.no_grad()
def latent_walk(module: nn.Module, keyframes: int, steps: int, seed: int, labels: Optional[torch.Tensor] = None,
                truncation_psi: float = 1.0, noise_mode: str = "const", batch: int = 64) -> torch.Tensor:
    """Images (keyframes, steps, C, H, W) in the generator's output range: row i walks from keyframe i to
    keyframe i + 1 (mod ``keyframes``). ``labels`` (keyframes,) for a conditional G; ``truncation_psi`` and
    ``noise_mode`` for a style-based one. G runs on ``batch`` frames at a time (a long walk at 1024 px would
    not fit in memory at once)."""
    if keyframes < 2:
        raise ValueError(f"a walk needs at least 2 keyframes, got {keyframes}")
    t = fractions(steps)
    z = torch.randn(keyframes, module.latent_dim, generator=torch.Generator().manual_seed(seed))
    following = torch.roll(torch.arange(keyframes), -1)
    if is_style_based(module):
        ws = truncated_ws(module, z, labels, truncation_psi)  # (K, num_ws, w_dim)
        path = torch.lerp(ws[:, None], ws[following][:, None], t[None, :, None, None].to(ws.dtype))
        frames = [module.synthesis(chunk, noise_mode) for chunk in path.flatten(0, 1).split(batch)]
    else:
        path = slerp(z, z[following], t).flatten(0, 1).split(batch)  # (K * T, latent_dim) in chunks
        if labels is None:
            frames = [module(chunk) for chunk in path]
        else:
            frames = [module(chunk, y) for chunk, y in zip(path, labels.repeat_interleave(steps).split(batch))]
    return torch.cat(frames).unflatten(0, (keyframes, steps))
