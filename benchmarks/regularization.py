"""StyleGAN2's regularization passes against its adversarial ones, with distgan's convolution
(``distgan.models.conv_gradfix``) and with torch's own. Measured, not derived.

G and D are those of a shipped config (``configs/stylegan2_1024.yaml`` by default), in ``--precision``, at
``--batch`` images per worker. Four passes, each run ``--repeats`` times after one warm-up, every run from the
same seed:

  g_main  z -> G -> images, a scalar of them, backward (G's adversarial step)
  g_pl    the path-length penalty on batch / ``loss.g_reg.batch_shrink`` (a double backward through G)
  d_main  reals -> ADA -> D -> logits, a scalar of them, backward (one half of D's adversarial step)
  d_r1    lazy R1: D's input gradient through ADA's resampling, backpropagated (a double backward through D)

ADA runs the config's pipeline (its default, ``bgc``, where the config has none) at a fixed ``--ada-p``. ``--conv torch`` swaps conv_gradfix for F.conv2d inside
this process, which is what StyleGAN2's layers called before it: the comparison its second derivative was
written for (the generic double-backward rule of a convolution). Both arms compute the same losses; the table
prints them side by side. On CUDA, memory is the peak of the timed runs; time is the median after a
synchronize.

    python benchmarks/regularization.py [--config configs/stylegan2_1024.yaml] [--batch 4] [--repeats 3]
        [--precision bf16] [--resolution R] [--conv gradfix,torch] [--ada-p 0.5] [--passes g_main,g_pl,d_main,d_r1]

Prints a table and, last, one JSON line with every number. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _activations, _stylegan2: beside this file

from _activations import GiB  # noqa: E402  (after the path above)
from _stylegan2 import (  # noqa: E402
    DTYPES, build_d, build_g, d_main_pass, d_r1_pass, g_main_pass, g_pl_pass, measure)

PASSES = ("g_main", "g_pl", "d_main", "d_r1")
CONVS = ("gradfix", "torch")


def _torch_conv2d(x, weight, stride=1, padding=0, groups=1):
    return F.conv2d(x, weight, None, stride, padding, 1, groups)


@contextlib.contextmanager
def convolution(kind: str):
    """StyleGAN2's layers on conv_gradfix (as shipped) or, for the comparison, on torch's F.conv2d. The layers
    call ``conv_gradfix.conv2d`` through the module, so replacing the attribute reroutes every one of them."""
    from distgan.models import conv_gradfix

    shipped = conv_gradfix.conv2d
    if kind == "torch":
        conv_gradfix.conv2d = _torch_conv2d
    try:
        yield
    finally:
        conv_gradfix.conv2d = shipped


def run_arm(args, conv: str, device: torch.device) -> dict:
    """Every pass of ``args.passes`` with one convolution; networks built from the same seed in each arm."""
    from distgan.gan.ada import AdaPipeline

    dtype = DTYPES[args.precision]
    torch.manual_seed(0)
    g, cfg = build_g(args.config, args.resolution, False, device, dtype)
    d = build_d(cfg, device, dtype)
    pipeline = AdaPipeline(cfg.augment.ada.pipeline, cfg.augment.ada)  # ADA's bgc where the config sets none

    def augment(x: torch.Tensor) -> torch.Tensor:
        return pipeline(x, args.ada_p)

    side = cfg.data.resolution
    generator = torch.Generator(device="cpu").manual_seed(1)
    z = torch.randn(args.batch, cfg.model.latent_dim, generator=generator).to(device, dtype)
    reals = (torch.rand(args.batch, cfg.data.channels, side, side, generator=generator) * 2 - 1).to(device, dtype)
    inputs = {"g_main": (g_main_pass, g, z),
              "g_pl": (g_pl_pass, g, z[: max(1, args.batch // cfg.loss.g_reg.batch_shrink)]),
              "d_main": (d_main_pass, d, augment, reals),
              "d_r1": (d_r1_pass, d, augment, reals)}
    arm = {"conv": conv, "resolution": side, "batch": args.batch, "precision": args.precision,
           "device": device.type, "ada_p": args.ada_p}
    with convolution(conv):
        for name in args.passes:
            fn, *fn_args = inputs[name]
            arm[name] = measure(fn, *fn_args, repeats=args.repeats)
            print(f"{conv} {name}: {json.dumps(arm[name])}", flush=True)
    del g, d
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return arm


def print_table(arms: list[dict], passes: list[str]) -> None:
    first = arms[0]
    where = torch.cuda.get_device_name() if first["device"] == "cuda" else "CPU"
    print(f"StyleGAN2 at {first['resolution']} px, batch {first['batch']}, {first['precision']}, "
          f"ADA p {first['ada_p']}, {where}")
    print(f"{'pass':>7} " + " ".join(f"{a['conv'] + ' ms':>12} {'GiB':>6} {'loss':>11}" for a in arms))
    for name in passes:
        cells = []
        for a in arms:
            r = a[name]
            peak = f"{r['peak_bytes'] / GiB:6.2f}" if "peak_bytes" in r else f"{'-':>6}"
            cells.append(f"{r['seconds'] * 1e3:12.1f} {peak} {r['loss']:11.5g}")
        print(f"{name:>7} " + " ".join(cells))
    for a in arms:
        for reg, main in (("g_pl", "g_main"), ("d_r1", "d_main")):
            if reg in a and main in a:
                print(f"{a['conv']}: {reg} takes {a[reg]['seconds'] / a[main]['seconds']:.1f}x the time of {main}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "stylegan2_1024.yaml")
    parser.add_argument("--batch", type=int, default=4, help="images per worker (the 1024 px config's is 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--resolution", type=int, default=None, help="instead of the config's (a power of 2)")
    parser.add_argument("--conv", default=",".join(CONVS), help="comma-separated: gradfix, torch (the default: both)")
    parser.add_argument("--ada-p", type=float, default=0.5, help="ADA's probability, fixed")
    parser.add_argument("--passes", default=",".join(PASSES), help="comma-separated, of " + ", ".join(PASSES))
    args = parser.parse_args()
    args.passes = [p for p in args.passes.split(",") if p]
    convs = [c for c in args.conv.split(",") if c]
    for key, given, allowed in (("--passes", args.passes, PASSES), ("--conv", convs, CONVS)):
        unknown = sorted(set(given) - set(allowed))
        if unknown or not given:
            parser.error(f"{key}: {unknown or 'nothing'} given; expected a comma-separated subset of {allowed}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arms = [run_arm(args, conv, device) for conv in convs]
    print_table(arms, args.passes)
    print(json.dumps(arms))


if __name__ == "__main__":
    main()
