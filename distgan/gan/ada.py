"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data"): D's inputs augmented with a probability p that follows D's overfitting.

Two parts. ``AdaPipeline`` is ADA's ``bgc`` pipeline: every chosen operation is applied to each sample with
probability p, in ADA's order: x-flip, quarter turns and integer translation as exact pixel operations;
isotropic scaling, rotation, anisotropic scaling, rotation again and fractional translation composed into
one affine map per sample and resampled once; brightness, contrast, luma flip, hue and saturation composed
into one colour matrix per sample; then cutout. It is differentiable in the images, so G's gradient passes
through it as it does through DiffAugment. ``AdaptiveAugment`` holds p and steers it: every ``interval`` D
steps, r_t = E[sign D(real)] over them (the metric ``d_real_sign``) moves p by sign(r_t - target) times the
real images seen over ``ada_kimg`` * 1000.

p must be the same on every rank, or the ranks would train different objectives: r_t is computed from the
sums of signs and counts all-reduced over the default process group, so every rank makes the same step from
the same numbers. Randomness comes from torch's global generator on the images' device, which the checkpoint
saves (as DiffAugment's does); p and the adjustment in progress go into the checkpoint with the algorithm's
state (``state_dict``).
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch
import torch.distributed as dist

from distgan.config import AdaConfig, AugmentConfig
from distgan.config.augment_schema import ADA_GROUPS, ADA_OPS
from distgan.gan import ada_ops
from distgan.gan.augment import build_augment

Augment = Callable[[torch.Tensor], torch.Tensor]


def expand(names: Iterable[str]) -> frozenset[str]:
    """The operations named by a list of groups and operations (``augment.ada.pipeline``)."""
    ops: set[str] = set()
    for name in names:
        if name in ADA_GROUPS:
            ops.update(ADA_GROUPS[name])
        elif name in ADA_OPS:
            ops.add(name)
        else:
            raise ValueError(f"unknown ADA operation or group {name!r}; groups are {', '.join(ADA_GROUPS)}")
    return frozenset(ops)


def _chance(n: int, p: float, device: torch.device) -> torch.Tensor:
    """[N] bools, each true with probability ``p``: which samples one operation touches."""
    return torch.rand(n, device=device) < p


class AdaPipeline:
    """ADA's augmentation pipeline over the operations ``ops`` (``ADA_OPS`` names), strengths from ``cfg``."""

    def __init__(self, ops: Iterable[str], cfg: Optional[AdaConfig] = None):
        self.ops = expand(ops)
        self.cfg = cfg or AdaConfig()

    def __call__(self, x: torch.Tensor, p: float) -> torch.Tensor:
        """``x`` ([N, C, H, W] in [-1, 1]) augmented with probability ``p`` per sample and operation."""
        if p <= 0 or not self.ops:
            return x  # exactly the identity, and no random draws
        # The matrices and resampling in fp32 whatever D's dtype; a sample no operation touched comes back
        # bit for bit (a bf16 value survives the round trip through fp32).
        y = x.float()
        y = self._blit(y, p)
        y = self._geom(y, p)
        y = self._color(y, p)
        y = self._cutout(y, p)
        return y.to(x.dtype)

    def _blit(self, y: torch.Tensor, p: float) -> torch.Tensor:
        n, _, h, w = y.shape
        dev = y.device
        if "xflip" in self.ops:
            flip = torch.rand(n, device=dev) < 0.5
            y = ada_ops.flip_x(y, flip & _chance(n, p, dev))
        if "rotate90" in self.ops:
            # Odd quarter turns would change a non-square image's shape: there only half turns.
            turns = torch.randint(4, (n,), device=dev) if h == w else 2 * torch.randint(2, (n,), device=dev)
            y = ada_ops.rotate90(y, torch.where(_chance(n, p, dev), turns, 0))
        if "xint" in self.ops:
            t = (torch.rand(n, 2, device=dev) * 2 - 1) * self.cfg.xint_max
            t = torch.where(_chance(n, p, dev).view(n, 1), t, 0)
            y = ada_ops.translate_int(y, torch.round(t[:, 0] * w).long(), torch.round(t[:, 1] * h).long())
        return y

    def _geom(self, y: torch.Tensor, p: float) -> torch.Tensor:
        n, _, h, w = y.shape
        dev = y.device
        ops, cfg = self.ops, self.cfg
        if not ops & set(ADA_GROUPS["geom"]):
            return y
        g_inv = torch.eye(3, device=dev).expand(n, 3, 3)
        touched = torch.zeros(n, dtype=torch.bool, device=dev)
        if "scale" in ops:
            on = _chance(n, p, dev)
            s = torch.where(on, torch.exp2(torch.randn(n, device=dev) * cfg.scale_std), 1.0)
            g_inv, touched = g_inv @ ada_ops.scale2d_inv(s, s), touched | on
        # Two rotations, before and after the anisotropic scaling (so that it can stretch along any axis),
        # each with the probability that makes "either" come out at p: 1 - (1 - p_rot)^2 = p.
        p_rot = 1 - math.sqrt(max(0.0, 1 - p))
        for stage in ("pre", "aniso", "post"):
            if stage == "aniso" and "aniso" in ops:
                on = _chance(n, p, dev)
                s = torch.where(on, torch.exp2(torch.randn(n, device=dev) * cfg.aniso_std), 1.0)
                g_inv, touched = g_inv @ ada_ops.scale2d_inv(s, 1 / s), touched | on
            elif stage != "aniso" and "rotate" in ops:
                on = _chance(n, p_rot, dev)
                theta = torch.where(on, (torch.rand(n, device=dev) * 2 - 1) * math.pi * cfg.rotate_max, 0.0)
                g_inv, touched = g_inv @ ada_ops.rotate2d_inv(-theta), touched | on
        if "xfrac" in ops:
            on = _chance(n, p, dev)
            t = torch.where(on.view(n, 1), torch.randn(n, 2, device=dev) * cfg.xfrac_std, 0.0)
            g_inv, touched = g_inv @ ada_ops.translate2d_inv(t[:, 0] * w, t[:, 1] * h), touched | on
        # Untouched samples keep their pixels exactly (an identity resampling would blur nothing, but round).
        return torch.where(touched.view(n, 1, 1, 1), ada_ops.warp(y, g_inv), y)

    def _color(self, y: torch.Tensor, p: float) -> torch.Tensor:
        n, channels = y.shape[:2]
        dev = y.device
        ops, cfg = self.ops, self.cfg
        if not ops & set(ADA_GROUPS["color"]):
            return y
        c = torch.eye(4, device=dev).expand(n, 4, 4)
        touched = torch.zeros(n, dtype=torch.bool, device=dev)
        if "brightness" in ops:
            on = _chance(n, p, dev)
            b = torch.where(on, torch.randn(n, device=dev) * cfg.brightness_std, 0.0)
            c, touched = ada_ops.translate3d(b) @ c, touched | on
        if "contrast" in ops:
            on = _chance(n, p, dev)
            k = torch.where(on, torch.exp2(torch.randn(n, device=dev) * cfg.contrast_std), 1.0)
            c, touched = ada_ops.scale3d(k) @ c, touched | on
        if "lumaflip" in ops:
            on = _chance(n, p, dev) & (torch.rand(n, device=dev) < 0.5)
            c, touched = ada_ops.luma_flip(on.float()) @ c, touched | on
        # Hue and saturation move colour off the grey axis: nothing to do to a grey image (as in ADA).
        if "hue" in ops and channels > 1:
            on = _chance(n, p, dev)
            theta = torch.where(on, (torch.rand(n, device=dev) * 2 - 1) * math.pi * cfg.hue_max, 0.0)
            c, touched = ada_ops.hue_rotation(theta) @ c, touched | on
        if "saturation" in ops and channels > 1:
            on = _chance(n, p, dev)
            s = torch.where(on, torch.exp2(torch.randn(n, device=dev) * cfg.saturation_std), 1.0)
            c, touched = ada_ops.saturation(s) @ c, touched | on
        return torch.where(touched.view(n, 1, 1, 1), ada_ops.apply_color(y, c), y)

    def _cutout(self, y: torch.Tensor, p: float) -> torch.Tensor:
        if "cutout" not in self.ops:
            return y
        n = y.shape[0]
        size = torch.where(_chance(n, p, y.device), self.cfg.cutout_size, 0.0)
        return ada_ops.cutout(y, size, torch.rand(n, 2, device=y.device))


def all_reduced(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks of the default process group; ``t`` itself without one (one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t


class AdaptiveAugment:
    """ADA as the step uses it: ``self(x)`` augments a D input with the current p; the step hands D's logits
    on the reals to ``observe`` and calls ``end_d_step`` after each D step, which adjusts p every
    ``interval`` of them. Every rank must make the same calls: an adjustment is a collective."""

    def __init__(self, pipeline: AdaPipeline, p: float = 0.0, target: float = 0.6, interval: int = 4,
                 ada_kimg: float = 500.0, adaptive: bool = True):
        self.pipeline = pipeline
        self.p = p
        """The probability each operation is applied to each sample with; the same on every rank."""
        self.target, self.interval, self.ada_kimg, self.adaptive = target, interval, ada_kimg, adaptive
        self.d_steps = 0
        """D steps since the last adjustment (the same on every rank)."""
        self.last_rt = float("nan")
        """r_t of the last adjustment."""
        self._local: Optional[torch.Tensor] = None
        """This rank's [sum of signs, count] since the last adjustment, on the logits' device (no sync)."""
        self._carried = (0.0, 0.0)
        """Global [sum of signs, count] of an interval begun before a resume (the same on every rank)."""

    @classmethod
    def from_config(cls, cfg: AdaConfig) -> "AdaptiveAugment":
        return cls(AdaPipeline(cfg.pipeline, cfg), cfg.p, cfg.target, cfg.interval, cfg.ada_kimg, cfg.adaptive)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.pipeline(x, self.p)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Count the signs of D's logits on (augmented) reals of one D micro-batch."""
        if not self.adaptive:
            return
        logits = real_logits.detach().float().flatten()
        # A skipped non-finite step may bring NaN logits: they carry no sign and are not counted.
        seen = ~torch.isnan(logits)
        stats = torch.stack([torch.where(seen, logits.sign(), 0.0).sum(), seen.sum().float()])
        self._local = stats if self._local is None else self._local + stats

    def end_d_step(self) -> None:
        """One D step done: every ``interval`` of them, adjust p from the signs seen on all ranks."""
        if not self.adaptive:
            return
        self.d_steps += 1
        if self.d_steps < self.interval:
            return
        signs, count = self._global_sums()
        self._local, self._carried, self.d_steps = None, (0.0, 0.0), 0
        self.adjust(signs, count)

    def adjust(self, signs: float, count: float) -> None:
        """ADA's update from global sums: p += sign(r_t - target) * images / (ada_kimg * 1000), in [0, 1].

        The images are the reals behind r_t (global batch x interval, as ADA counts them; with n_critic and
        accumulation, every one D saw). ADA bounds p below only; above 1 every operation is already applied
        to every sample, and a p beyond it would only take longer to come back."""
        if count <= 0:
            return
        self.last_rt = signs / count
        direction = (self.last_rt > self.target) - (self.last_rt < self.target)
        self.p = min(max(self.p + direction * count / (self.ada_kimg * 1000), 0.0), 1.0)

    def _global_sums(self) -> tuple[float, float]:
        """Collective: the interval's [sum of signs, count] over every rank (one host sync)."""
        if self._local is None:
            # Nothing observed since the last adjustment, on any rank (they all make the same calls): no
            # collective, and no tensor on a device no logits have shown (NCCL reduces only GPU tensors).
            return self._carried
        signs, count = all_reduced(self._local).tolist()
        return signs + self._carried[0], count + self._carried[1]

    # -- checkpoint ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """p and the interval in progress, global. Collective when adaptive: every rank calls it (as the
        loop's checkpoint does), so that a resumed run adjusts p exactly when and as this one would."""
        if not self.adaptive:
            return {"p": self.p}
        signs, count = self._global_sums()
        return {"p": self.p, "d_steps": self.d_steps, "signs": signs, "count": count}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict``'s output. A fixed p (``adaptive`` false) is the config's, not the
        checkpoint's: it is a setting, as the learning rate is."""
        if not self.adaptive or "p" not in state:
            return
        self.p = float(state["p"])
        self.d_steps = int(state.get("d_steps", 0))
        # Global sums, the same on every rank: added once after the next all-reduce, not to a rank's share.
        self._local, self._carried = None, (float(state.get("signs", 0.0)), float(state.get("count", 0.0)))


def build_d_augment(cfg: AugmentConfig) -> Optional[Augment]:
    """What the config puts in front of D: ADA (an ``AdaptiveAugment``), DiffAugment's policy, or None."""
    if cfg.ada.enabled:
        return AdaptiveAugment.from_config(cfg.ada)
    return build_augment(cfg.policy) if cfg.policy else None
