"""ADA against overfitting: StyleGAN2 on 100 digits, with and without adaptive discriminator augmentation.

Writes ``--images`` of the built-in digits (the same number of each class, at 16 px) into a folder of PNGs,
then trains ``configs/stylegan2_digits.yaml`` on that folder with and without ADA side by side: a two-trial
grid sweep over ``augment.ada.enabled`` on an embedded Ray, each trial on ``--workers`` CPU workers (1 each
fits both on 2 cores), W&B off, one evaluation at the end (FID on 500 samples in the domain features; the
sweep ranks by it). Per logged window it prints ``d_real_sign`` (E[sign D(real)], ADA's overfitting signal
r_t) of both runs and ADA's p. What ADA claims (Karras et al., 2020b, sec. 3): without it D memorizes a
small set, r_t climbing toward 1; with it p rises while r_t is above the target (0.6) and r_t settles near
the target.

``--ada-kimg`` (default 20) is ADA's adjustment speed: thousands of real images for p to move by 1. The
paper's 500 suits its 25M-image runs; a few thousand steps here see ~100k images, so p could not move far.

    python benchmarks/ada.py [--images 100] [--steps 2000] [--ada-kimg 20] [--workers 1]

Prints a table and, last, one JSON line with every number. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "stylegan2_digits.yaml"
LOG_EVERY = 50


def write_digits(folder: Path, n: int) -> Path:
    """``n`` of scikit-learn's digits, ``n // 10`` per class (the first of each), as 16 px grey PNGs."""
    from distgan.config import DataConfig
    from distgan.data.builtin import load_digits

    data = load_digits(DataConfig(name="digits", resolution=16))
    picked = np.concatenate([np.flatnonzero(data.labels.numpy() == c)[:n // 10] for c in range(10)])
    folder.mkdir(parents=True, exist_ok=True)
    for i in picked:
        pixels = ((data.x[i, 0].numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    return folder


def train_both(folder: Path, args, storage: str) -> tuple[list[dict], list[dict], dict]:
    """Metrics of the runs without and with ADA, and each one's final FID."""
    import distgan
    from distgan.launch.tune import run_tune
    from distgan.tracking.jsonl import read_metrics

    cfg = distgan.load_config(CONFIG, (
        f"data.path={folder}", "data.channels=1", "data.resolution=16", "data.stream=false",
        f"train.steps={args.steps}", f"train.log_every={LOG_EVERY}", f"train.checkpoint_every={args.steps}",
        f"train.sample_every={args.steps}", f"eval.every={args.steps}", "eval.n=500", "eval.metrics=fid",
        "tracking.wandb=false", f"scaling.num_workers={args.workers}", f"augment.ada.ada_kimg={args.ada_kimg}",
        "tune.space={augment.ada.enabled: {grid: [false, true]}}", "tune.num_samples=1"))
    result = run_tune(cfg, name="ada", storage=storage)
    runs = {row["values"]["augment.ada.enabled"]: row for row in result.rows}
    metrics = {ada: read_metrics(result.sweep_dir / "trials" / row["trial"] / "metrics.jsonl")
               for ada, row in runs.items()}
    return metrics[False], metrics[True], {("on" if ada else "off"): row["fid"] for ada, row in runs.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100, help="images in the set (a multiple of 10)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--ada-kimg", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_digits(Path(tmp) / "digits", args.images)
        off, on, fid = train_both(folder, args, tmp)
    print(f"\nStyleGAN2 (configs/stylegan2_digits.yaml) on {args.images} digits, {args.workers} worker(s), "
          f"ADA target 0.6, ada_kimg {args.ada_kimg:g}; d_real_sign = E[sign D(real)] per {LOG_EVERY} steps")
    print(f"{'step':>6}{'no ADA r_t':>12}{'ADA r_t':>10}{'ADA p':>8}")
    for a, b in zip(off, on):
        print(f"{a['step']:>6}{a['d_real_sign']:>12.3f}{b['d_real_sign']:>10.3f}{b.get('ada_p', 0.0):>8.3f}")
    last = max(1, len(off) // 4)  # the last quarter of the run
    summary = {"no_ada_r_t": statistics.mean(r["d_real_sign"] for r in off[-last:]),
               "ada_r_t": statistics.mean(r["d_real_sign"] for r in on[-last:]),
               "ada_p": statistics.mean(r.get("ada_p", 0.0) for r in on[-last:])}
    summary["fid"] = fid
    print(f"last quarter, mean: r_t {summary['no_ada_r_t']:.3f} without ADA, {summary['ada_r_t']:.3f} with "
          f"(p {summary['ada_p']:.3f}); FID at the end {fid['off']:.2f} without, {fid['on']:.2f} with")
    print(json.dumps({"args": vars(args), "summary": summary,
                      "off": [{k: r.get(k) for k in ("step", "d_real_sign", "loss_d", "loss_g")} for r in off],
                      "on": [{k: r.get(k) for k in ("step", "d_real_sign", "ada_p", "loss_d", "loss_g")}
                             for r in on]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
