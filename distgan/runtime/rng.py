"""Random streams of one rank: seeded per (seed, rank), saved in checkpoints, reseeded after a reshard."""

from __future__ import annotations

import numpy as np
import torch


def latent_generator(seed: int, rank: int) -> torch.Generator:
    # Distinct, well-mixed streams per (seed, rank); seed + rank would collide across runs.
    state = int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
    return torch.Generator().manual_seed(state)


def rng_state(z_gen: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"torch_cpu": torch.get_rng_state(), "latents": z_gen.get_state()}
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state()
    return state


def reseed(seed: int, rank: int, step: int, z_gen: torch.Generator) -> None:
    """Fresh RNG streams for ``rank`` from ``step`` on: a resharded resume has no saved state for them."""
    torch_seed, latent_seed = np.random.SeedSequence([seed, rank, step]).generate_state(2)
    torch.manual_seed(int(torch_seed))
    z_gen.manual_seed(int(latent_seed))


def restore_rng(state: dict[str, torch.Tensor], z_gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch_cpu"])
    z_gen.set_state(state["latents"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["torch_cuda"])
