"""Sampling a style-based generator: the truncation trick and style-mixing grids (``distgan sample --truncation``,
``--mix``; latent walks are ``interpolation``'s). Chosen by what G can do: a G with a ``mapping`` network (and
``synthesis``, ``num_ws``) qualifies.

Latents are drawn as ``distgan.persist.export.generate`` draws them (one ``torch.Generator`` seeded with
``--seed``), so ``--truncation 1`` gives the plain command's latents. Noise defaults to ``const`` (as StyleGAN's
generate.py): the same seed gives the same images, and psi 0 gives one image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from distgan.config import ConfigError
from distgan.tracking.images import to_unit

COARSE_STYLES = 4
"""Styles the mixing grid takes from its rows by default: StyleGAN's "coarse" styles (4x4 and 8x8, fig. 3)."""


def is_style_based(module: nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("mapping", "synthesis", "num_ws"))


def require_style_based(module: nn.Module, flag: str) -> None:
    if not is_style_based(module):
        raise ConfigError(f"{flag}: needs a generator with a mapping network (model.family=stylegan2); this one is "
                          f"a {type(module).__name__}")


def truncated_ws(module: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor], psi: float) -> torch.Tensor:
    """The styles (n, num_ws, w_dim) of latents ``z``, pulled toward the tracked ``w_avg`` by ``psi``."""
    return module.mapping(z, labels, truncation_psi=psi)


@torch.no_grad()
def generate_styled(module: nn.Module, n: int, seed: int, labels: Optional[torch.Tensor] = None,
                    truncation_psi: float = 1.0, noise_mode: str = "const", batch: int = 256) -> torch.Tensor:
    """``n`` samples with w pulled toward the tracked ``w_avg`` by ``truncation_psi`` (StyleGAN sec. 3.3:
    w' = w_avg + psi (w - w_avg); 1 leaves w, 0 gives the average image)."""
    z = torch.randn(n, module.latent_dim, generator=torch.Generator().manual_seed(seed))
    out = []
    for i in range(0, n, batch):
        y = None if labels is None else labels[i:i + batch]
        out.append(module.synthesis(truncated_ws(module, z[i:i + batch], y, truncation_psi), noise_mode))
    return torch.cat(out)


def default_crossover(num_ws: int) -> int:
    """The coarse styles (``COARSE_STYLES``), at most half of them, at least one."""
    return max(1, min(COARSE_STYLES, num_ws // 2))


@torch.no_grad()
def mixing_grid(module: nn.Module, rows: int, cols: int, seed: int, crossover: Optional[int] = None,
                truncation_psi: float = 1.0, noise_mode: str = "const",
                row_labels: Optional[torch.Tensor] = None, col_labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A style-mixing grid as StyleGAN's fig. 3: ``(rows + 1) x (cols + 1)`` images, row-major. The first row is
    the column sources, the first column the row sources, the corner blank (-1, black); cell (i, j) takes the
    styles before ``crossover`` from row source i and the rest from column source j."""
    num_ws = module.num_ws
    k = default_crossover(num_ws) if crossover is None else crossover
    if not 1 <= k < num_ws:
        raise ConfigError(f"--crossover: must be from 1 to {num_ws - 1} (this generator has {num_ws} styles), got {k}")
    gen = torch.Generator().manual_seed(seed)
    z_rows, z_cols = torch.randn(rows, module.latent_dim, generator=gen), torch.randn(cols, module.latent_dim,
                                                                                      generator=gen)
    ws_rows = truncated_ws(module, z_rows, row_labels, truncation_psi)
    ws_cols = truncated_ws(module, z_cols, col_labels, truncation_psi)
    mixed = torch.cat([ws_rows[:, None, :k].expand(-1, cols, -1, -1),
                       ws_cols[None, :, k:].expand(rows, -1, -1, -1)], dim=2).flatten(0, 1)
    images_rows, images_cols = module.synthesis(ws_rows, noise_mode), module.synthesis(ws_cols, noise_mode)
    cells = module.synthesis(mixed, noise_mode).unflatten(0, (rows, cols))
    corner = torch.full_like(images_cols[:1], -1.0)
    top = torch.cat([corner, images_cols])
    body = torch.cat([images_rows[:, None], cells], dim=1).flatten(0, 1)
    return torch.cat([top, body])


def class_index(item: str, classes: int) -> Optional[int]:
    """``item`` as a class index below ``classes``, or None. ASCII decimal digits only: ``str.isdigit`` also holds
    for '²' (which int() refuses) and '٣' (which int() reads as 3), and indices are documented as decimal
    numbers. The length is checked before int(), which refuses strings of over 4300 digits."""
    if not (item.isascii() and item.isdigit()):
        return None
    digits = item.lstrip("0") or "0"
    return int(digits) if len(digits) <= len(str(classes)) and int(digits) < classes else None


def parse_labels(text: Optional[str], meta: dict, n: int, key: str = "--labels") -> Optional[torch.Tensor]:
    """Labels for ``n`` samples of the generator ``meta`` describes: ``text`` is ``all`` (the default for a
    conditional generator) or a comma list of class indices or names; the n samples cycle through them, so
    each gets an equal share (within one). ``key`` is what errors name (a CLI flag, a request parameter)."""
    names = list(meta.get("class_names") or [])
    if not names:
        if text is not None:
            raise ConfigError(f"{key} {text!r}: this generator is unconditional; leave {key} out")
        return None
    if text is None or text.strip() == "all":
        chosen = list(range(len(names)))
    else:
        chosen = []
        for item in (t.strip() for t in text.split(",") if t.strip()):
            index = names.index(item) if item in names else class_index(item, len(names))
            if index is None:
                shown = repr(item) if len(item) <= 40 else f"{item[:36]!r}..."
                raise ConfigError(f"{key}: {shown} is not a class of this generator; it was trained on "
                                  f"{len(names)} classes: 0-{len(names) - 1} or {', '.join(names)}")
            chosen.append(index)
        if not chosen:
            raise ConfigError(f"{key}: give 'all' or a comma-separated list of classes")
    return torch.tensor(chosen)[torch.arange(n) % len(chosen)]


@dataclass(frozen=True)
class Draw:
    """One request for samples: ``n`` latents from ``seed`` (as ``distgan sample --seed`` draws them), the
    labels of a conditional G, and the truncation psi of a style-based one (None: untruncated)."""

    n: int
    seed: int
    labels: Optional[torch.Tensor] = None
    truncation: Optional[float] = None


@torch.no_grad()
def generate_many(module: nn.Module, draws: Sequence[Draw]) -> list[torch.Tensor]:
    """Each draw's samples as ``generate`` / ``generate_styled`` make them alone (the same latents from its own
    seed, const noise), computed in one forward pass for all of them: a server's batch. Up to float rounding
    the result does not depend on what else is in the batch (G is in eval mode: no batch statistics)."""
    # Drawn on the CPU from each seed (the latents `distgan sample` draws), then moved to the model's device:
    # a server's replica holds G on its GPU.
    device = next(module.parameters()).device
    z = torch.cat([torch.randn(d.n, module.latent_dim, generator=torch.Generator().manual_seed(d.seed))
                   for d in draws]).to(device)
    conditional = draws[0].labels is not None
    if any((d.labels is not None) != conditional for d in draws):
        raise ValueError("either every draw has labels (a conditional G) or none has")
    labels = torch.cat([d.labels for d in draws]) if conditional else None
    if is_style_based(module):
        ws, start = [], 0
        for d in draws:  # each draw's own psi; the mapping network is small, synthesis is the cost
            y = None if labels is None else labels[start:start + d.n]
            ws.append(truncated_ws(module, z[start:start + d.n], y, 1.0 if d.truncation is None else d.truncation))
            start += d.n
        out = module.synthesis(torch.cat(ws), "const")
    elif any(d.truncation is not None for d in draws):
        raise ConfigError(f"truncation: needs a generator with a mapping network (model.family=stylegan2); "
                          f"this one is a {type(module).__name__}")
    else:
        out = module(z) if labels is None else module(z, labels)
    return list(out.split([d.n for d in draws]))


def sample_arrays(samples: torch.Tensor, labels: Optional[torch.Tensor]) -> dict[str, np.ndarray]:
    """What an ``.npz`` of samples holds: ``images`` (float32 in [0, 1] for image G, in any leading shape, as a
    walk's (K, STEPS, C, H, W); the raw points for a point G) and, for a conditional G, ``labels`` (int64)."""
    array = to_unit(samples) if samples.dim() >= 4 else samples.float()
    arrays = {"images": array.numpy().astype(np.float32)}
    if labels is not None:
        arrays["labels"] = labels.numpy().astype(np.int64)
    return arrays
