"""What the StyleGAN2 pass benchmarks share: a shipped config's networks without its data, and the timing of
one training pass (``checkpointing.py``, ``regularization.py``)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
import yaml

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def shipped_config(config: Path, resolution: int | None = None, checkpointing: bool = False):
    """The config's model, image shape and ADA sections as a typed Config. Not loaded whole: its data set need
    not exist here (the shipped 1024 px one names a folder)."""
    from distgan.config import Config, build_section

    shipped = yaml.safe_load(config.read_text())
    data = {key: shipped["data"][key] for key in ("channels", "resolution") if key in shipped.get("data", {})}
    if resolution:
        data["resolution"] = resolution
    tree = {"model": {**shipped["model"], "checkpointing": checkpointing}, "data": data}
    for section in ("loss", "augment"):
        if section in shipped:
            tree[section] = shipped[section]
    return build_section(Config, tree, "")


def measure(fn, *args, repeats: int) -> dict:
    """Median seconds of ``fn(*args)`` over ``repeats`` runs after a warm-up, and the loss it returned; on CUDA
    also the peak bytes of the timed runs. The last argument, a tensor, says the device. Every run starts from
    the same seed, so that its random draws (noise, augmentations) and loss are the same each time."""
    cuda = args[-1].device.type == "cuda"
    start = time.perf_counter()
    torch.manual_seed(0)
    fn(*args)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    print(f"  {fn.__name__}: warm-up {time.perf_counter() - start:.2f} s", flush=True)
    times = []
    for _ in range(repeats):
        torch.manual_seed(0)
        start = time.perf_counter()
        loss = fn(*args)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    result = {"seconds": statistics.median(times), "loss": loss.item()}
    if cuda:
        result["peak_bytes"] = torch.cuda.max_memory_allocated()
    return result


def build_g(config: Path, resolution: int | None, checkpointing: bool, device: torch.device, dtype):
    """The config's StyleGAN2 G in training mode on ``device``, and the config."""
    from distgan.models import build_generator

    cfg = shipped_config(config, resolution, checkpointing)
    side = cfg.data.resolution
    g = build_generator(cfg.model, (cfg.data.channels, side, side)).to(device, dtype).train()
    return g, cfg


def build_d(cfg, device: torch.device, dtype):
    """The config's StyleGAN2 D in training mode on ``device``."""
    from distgan.models import build_discriminator

    side = cfg.data.resolution
    return build_discriminator(cfg.model, (cfg.data.channels, side, side)).to(device, dtype).train()


def g_main_pass(g, z: torch.Tensor) -> torch.Tensor:
    """What G's adversarial step asks: z -> G -> images, a scalar of them, backward."""
    g.zero_grad(set_to_none=True)
    loss = g(z).float().square().mean()
    loss.backward()
    return loss.detach()


def g_pl_pass(g, z: torch.Tensor) -> torch.Tensor:
    """The path-length penalty's pass as ``distgan.gan.regularizers`` takes it: the gradient of
    (images * noise) with respect to w, kept (``create_graph``) and backpropagated into G: a double backward."""
    from distgan.gan.regularizers import path_length_noise, path_lengths

    g.zero_grad(set_to_none=True)
    ws = g.mapping(z)
    images = g.synthesis(ws, g.noise_mode)
    loss = path_lengths(images, ws, path_length_noise(images)).mean()
    loss.backward()
    return loss.detach()


def d_main_pass(d, augment, x: torch.Tensor) -> torch.Tensor:
    """What D's adversarial step asks of one batch: augment -> D -> logits, a scalar of them, backward."""
    d.zero_grad(set_to_none=True)
    loss = d(augment(x)).float().mean()
    loss.backward()
    return loss.detach()


def d_r1_pass(d, augment, x: torch.Tensor) -> torch.Tensor:
    """Lazy R1 as the step takes it: the gradient of D(augment(x)) with respect to the reals x, through ADA's
    resampling, kept and backpropagated into D: a double backward."""
    from distgan.gan.regularizers import R1

    d.zero_grad(set_to_none=True)
    loss = R1().penalty(lambda reals: d(augment(reals)), x)
    loss.backward()
    return loss.detach()
