"""Activation checkpointing of StyleGAN2's synthesis blocks (``model.checkpointing``): memory and time of G's
two training passes with and without it. Measured, not derived.

G is the one of a shipped config (``configs/stylegan2_1024.yaml`` by default: StyleGAN2-ADA's paper1024
network, 30.4M parameters), in the config's precision, at ``--batch`` images per worker. Two passes, each run
``--repeats`` times after one warm-up:

  main   z -> G -> images, a scalar of the images, backward: what G's adversarial step asks of memory
  pl     the path-length regularization pass on half the batch (``loss.g_reg.batch_shrink``): the gradient of
         the images with respect to w, taken with ``create_graph`` so that the penalty can be backpropagated
         (a double backward, here through recomputed blocks when checkpointing)

On CUDA, memory is ``torch.cuda.max_memory_allocated`` over a pass (parameters and their gradients included),
time the median wall time of a pass after a synchronize. On CPU, memory is the bytes autograd saves for backward
in the forward of the main pass (``saved_tensors_hooks``, parameters excluded), which is what checkpointing
trades for recomputation; there ``--config configs/stylegan2_digits.yaml`` or ``--resolution`` makes the
network small enough to measure.

    python benchmarks/checkpointing.py [--config configs/stylegan2_1024.yaml] [--batch 4] [--repeats 5]
                                       [--precision bf16] [--resolution R] [--passes main,pl]

Prints a table and, last, one JSON line with every number. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _activations, _stylegan2: beside this file

from _activations import GiB, SavedTensorBytes  # noqa: E402  (after the path above)
from _stylegan2 import DTYPES, build_g, g_main_pass, g_pl_pass, measure  # noqa: E402


def saved_bytes(g, z: torch.Tensor) -> int:
    """Bytes autograd keeps for backward after G's forward (CPU: the activations checkpointing gives up)."""
    with SavedTensorBytes(exclude=list(g.parameters())) as saved:
        images = g(z)
        found = saved.nbytes
    del images
    return found


def run(args) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = DTYPES[args.precision]
    rows = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        g, cfg = build_g(args.config, args.resolution, checkpointing, device, dtype)
        z = torch.randn(args.batch, cfg.model.latent_dim, device=device, dtype=dtype)
        z_pl = z[: max(1, args.batch // cfg.loss.g_reg.batch_shrink)]
        row = {"checkpointing": checkpointing, "resolution": cfg.data.resolution, "batch": args.batch,
               "precision": args.precision, "device": device.type, "main": measure(g_main_pass, g, z, repeats=args.repeats)}
        if "pl" in args.passes:
            row["pl"] = measure(g_pl_pass, g, z_pl, repeats=args.repeats)
        if device.type == "cpu":
            row["saved_bytes"] = saved_bytes(g, z)
        rows.append(row)
        print(f"checkpointing={checkpointing}: {json.dumps(row)}", flush=True)
        del g
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def print_table(rows: list[dict]) -> None:
    first = rows[0]
    where = torch.cuda.get_device_name() if first["device"] == "cuda" else "CPU"
    print(f"StyleGAN2 G at {first['resolution']} px, batch {first['batch']}, {first['precision']}, {where}")
    heading = "peak GiB main / pl" if first["device"] == "cuda" else "saved activations GiB"
    print(f"{'checkpointing':>14} {heading:>22} {'ms main':>9} {'ms pl':>9}")
    for r in rows:
        if r["device"] == "cuda":
            pl_peak = f"{r['pl']['peak_bytes'] / GiB:.2f}" if "pl" in r else "-"
            mem = f"{r['main']['peak_bytes'] / GiB:.2f} / {pl_peak}"
        else:
            mem = f"{r['saved_bytes'] / GiB:.3f}"
        pl = f"{r['pl']['seconds'] * 1e3:9.1f}" if "pl" in r else f"{'-':>9}"
        print(f"{str(r['checkpointing']):>14} {mem:>22} {r['main']['seconds'] * 1e3:9.1f} {pl}")
    off, on = rows

    def memory_of(r: dict) -> int:
        return r["main"]["peak_bytes"] if r["device"] == "cuda" else r["saved_bytes"]

    print(f"checkpointing keeps {memory_of(on) / memory_of(off):.2f}x the memory at "
          f"{on['main']['seconds'] / off['main']['seconds']:.2f}x the time of the main pass")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "stylegan2_1024.yaml")
    parser.add_argument("--batch", type=int, default=4, help="images per worker (the 1024 px config's is 4)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--resolution", type=int, default=None, help="instead of the config's (a power of 2)")
    parser.add_argument("--passes", default="main,pl", help="main alone skips the path-length pass")
    args = parser.parse_args()
    rows = run(args)
    print_table(rows)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
