"""Released RRDBNet state dicts built by hand from the published naming schemes, and the published forward.

Independent of distgan: names from BasicSR's ``rrdbnet_arch.py`` and the ESRGAN repository's two releases,
the forward written from the ESRGAN paper (dense blocks with 0.2 residual scaling, nearest x2 + conv stages,
LeakyReLU 0.2, images in [0, 1]). Small widths, random weights: fast, and no download.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

WIDTH, GROWTH, BLOCKS = 8, 4, 2


def _conv(gen: torch.Generator, out_ch: int, in_ch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(out_ch, in_ch, 3, 3, generator=gen) * 0.1, torch.randn(out_ch, generator=gen) * 0.1


def basicsr_rrdbnet(seed: int = 0, in_ch: int = 3, width: int = WIDTH, growth: int = GROWTH, blocks: int = BLOCKS,
                    stages: int = 2) -> dict[str, torch.Tensor]:
    """BasicSR's RRDBNet parameter names (basicsr/archs/rrdbnet_arch.py), random weights."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def put(name: str, out_ch: int, in_c: int) -> None:
        state[f"{name}.weight"], state[f"{name}.bias"] = _conv(gen, out_ch, in_c)

    put("conv_first", width, in_ch)
    for b in range(blocks):
        for r in (1, 2, 3):
            for j in range(1, 6):
                put(f"body.{b}.rdb{r}.conv{j}", width if j == 5 else growth, width + (j - 1) * growth)
    put("conv_body", width, width)
    for i in range(1, stages + 1):
        put(f"conv_up{i}", width, width)
    put("conv_hr", width, width)
    put("conv_last", 3 if in_ch == 12 else in_ch, width)
    return state


def esrgan_names(state: dict) -> dict:
    """The same tensors under the ESRGAN repository's RRDBNet names (RRDB_trunk, trunk_conv, upconv, HRconv)."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "body":
            key = f"RRDB_trunk.{parts[1]}.RDB{parts[2][3:]}.{parts[3]}.{parts[4]}"
        else:
            head = {"conv_body": "trunk_conv", "conv_hr": "HRconv"}.get(parts[0], parts[0])
            key = f"{head.replace('conv_up', 'upconv')}.{parts[1]}"
        out[key] = value
    return out


def esrgan_old_names(state: dict, stages: int = 2, blocks: int = BLOCKS) -> dict:
    """The first ESRGAN release's one Sequential: model.0 first conv, model.1.sub.N.RDBk.convj.0 dense convs,
    model.1.sub.BLOCKS trunk conv, per stage (upsample, conv, lrelu), then HR conv, lrelu, last conv."""
    index = {"conv_first": "0", "conv_body": f"1.sub.{blocks}", "conv_hr": str(3 * stages + 2),
             "conv_last": str(3 * stages + 4), **{f"conv_up{i}": str(3 * i) for i in range(1, stages + 1)}}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "body":
            key = f"model.1.sub.{parts[1]}.RDB{parts[2][3:]}.{parts[3]}.0.{parts[4]}"
        else:
            key = f"model.{index[parts[0]]}.{parts[1]}"
        out[key] = value
    return out


def reference_forward(state: dict, x01: torch.Tensor) -> torch.Tensor:
    """The published RRDBNet's forward on [0, 1] images, written from the paper with BasicSR's names."""
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    stages = sum(1 for k in state if k.startswith("conv_up") and k.endswith(".weight"))
    def conv(name: str, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], padding=1)

    def lrelu(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2)

    feat = conv("conv_first", x01)
    trunk = feat
    for b in range(blocks):
        block_in = trunk
        for r in (1, 2, 3):
            seen = [trunk]
            for j in range(1, 5):
                seen.append(lrelu(conv(f"body.{b}.rdb{r}.conv{j}", torch.cat(seen, 1))))
            trunk = trunk + 0.2 * conv(f"body.{b}.rdb{r}.conv5", torch.cat(seen, 1))
        trunk = block_in + 0.2 * trunk
    feat = feat + conv("conv_body", trunk)
    for i in range(1, stages + 1):
        feat = lrelu(conv(f"conv_up{i}", F.interpolate(feat, scale_factor=2, mode="nearest")))
    return conv("conv_last", lrelu(conv("conv_hr", feat)))
