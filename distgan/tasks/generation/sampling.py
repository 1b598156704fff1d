"""Sampling a style-based generator: the truncation trick and style-mixing grids (``distgan sample --truncation``,
``--mix``). Chosen by what G can do: a G with a ``mapping`` network (and ``synthesis``, ``num_ws``) qualifies.

Latents are drawn as ``distgan.persist.export.generate`` draws them (one ``torch.Generator`` seeded with
``--seed``), so ``--truncation 1`` gives the plain command's latents. Noise defaults to ``const`` (as StyleGAN's
generate.py): the same seed gives the same images, and psi 0 gives one image.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from distgan.config import ConfigError

COARSE_STYLES = 4
"""Styles the mixing grid takes from its rows by default: StyleGAN's "coarse" styles (4x4 and 8x8, fig. 3)."""


def is_style_based(module: nn.Module) -> bool:
    return all(hasattr(module, name) for name in ("mapping", "synthesis", "num_ws"))


def require_style_based(module: nn.Module, flag: str) -> None:
    if not is_style_based(module):
        raise ConfigError(f"{flag}: needs a generator with a mapping network (model.family=stylegan2); this one is "
                          f"a {type(module).__name__}")


def _ws(module: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor], psi: float) -> torch.Tensor:
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
        out.append(module.synthesis(_ws(module, z[i:i + batch], y, truncation_psi), noise_mode))
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
    ws_rows, ws_cols = _ws(module, z_rows, row_labels, truncation_psi), _ws(module, z_cols, col_labels, truncation_psi)
    mixed = torch.cat([ws_rows[:, None, :k].expand(-1, cols, -1, -1),
                       ws_cols[None, :, k:].expand(rows, -1, -1, -1)], dim=2).flatten(0, 1)
    images_rows, images_cols = module.synthesis(ws_rows, noise_mode), module.synthesis(ws_cols, noise_mode)
    cells = module.synthesis(mixed, noise_mode).unflatten(0, (rows, cols))
    corner = torch.full_like(images_cols[:1], -1.0)
    top = torch.cat([corner, images_cols])
    body = torch.cat([images_rows[:, None], cells], dim=1).flatten(0, 1)
    return torch.cat([top, body])
