"""Time to make one batch of super-resolution training crops, by degradation pipeline, on this CPU.

Each mode builds ``SRBatches`` over the built-in photos (HR crops of ``--crop`` px, x4, one rank) and times
``next_batch()`` of ``--batch`` crops ``--repeats`` times (after one warm-up batch): cutting, flipping and
degrading every crop on the calling thread, as the in-memory path does (a streaming task does the same work
per sample). Modes:

  bicubic           ``classic`` with nothing configured: MATLAB bicubic and 8-bit rounding only
  classic           ``classic`` with blur [0.2, 3], noise [1, 25], JPEG [30, 95] (one pass)
  realesrgan        ``realesrgan`` at the published defaults (two rounds, final sinc, JPEG twice)
  realesrgan-usm    the same with ``sharpen_gt`` (unsharp mask of every HR crop first)

    python benchmarks/degradations.py [--modes bicubic,classic,realesrgan,realesrgan-usm] [--batch 16]
                                      [--crop 128] [--repeats 7] [--threads 1] [--apply realesrgan,realesrgan-usm]

Then, for the modes given to ``--apply`` (default ``realesrgan``), the degradation alone on one batch of the
same crops, as ``data.degradation.device`` places it: ``per-sample`` calls ``degrade`` on each crop in turn
(what the data path does), ``batched`` is ``draw`` for every sample plus one ``degrade_batch`` of the whole
batch (what the training worker does under ``device: trainer``), on the CPU and, when there is one, on the
GPU (crops already there, synchronised before the clock stops).

Prints the median, min and max seconds per batch and milliseconds per crop, then one JSON line. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from distgan.config import DataConfig, DegradationConfig
from distgan.config.data_schema import RealESRGANConfig
from distgan.data.degradations import degrade, degrade_batch, draw
from distgan.tasks.super_resolution.batches import SRBatches, sample_generator
from distgan.tasks.super_resolution.data import load_sr

SCALE = 4
MODES = {
    "bicubic": DegradationConfig(),
    "classic": DegradationConfig(blur_sigma=(0.2, 3.0), noise_sigma=(1.0, 25.0), jpeg_quality=(30, 95)),
    "realesrgan": DegradationConfig(type="realesrgan"),
    "realesrgan-usm": DegradationConfig(type="realesrgan", realesrgan=RealESRGANConfig(sharpen_gt=True)),
}


def time_mode(degradation: DegradationConfig, batch: int, crop: int, repeats: int) -> list[float]:
    cfg = DataConfig(name="photos", channels=3, resolution=crop, val_crop=crop, degradation=degradation)
    batches = SRBatches(load_sr(cfg, SCALE), cfg, SCALE, batch, 0, 1, seed=0)
    batches.next_batch()  # warm-up: first calls allocate and pick kernels
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        batches.next_batch()
        seconds.append(time.perf_counter() - started)
    return seconds


def time_apply(degradation: DegradationConfig, batch: int, crop: int, repeats: int,
               device: torch.device) -> dict[str, list[float]]:
    """Seconds per batch of the degradation alone: per sample in turn, and batched (draws included)."""
    cfg = DataConfig(name="photos", channels=3, resolution=crop, val_crop=crop, degradation=degradation)
    hr = SRBatches(load_sr(cfg, SCALE), cfg, SCALE, batch, 0, 1, seed=0).next_batch().real.to(device)
    shape = tuple(hr.shape[1:])

    def per_sample() -> None:
        for i, x in enumerate(hr):
            degrade(x, SCALE, degradation, sample_generator(0, 0, i))

    def batched() -> None:
        draws = [draw(shape, SCALE, degradation, sample_generator(0, 0, i)) for i in range(batch)]
        degrade_batch(hr, SCALE, degradation, draws)

    seconds: dict[str, list[float]] = {}
    for name, run in (("per-sample", per_sample), ("batched", batched)):
        run()  # warm-up
        seconds[name] = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a data task gets one CPU)")
    parser.add_argument("--apply", default="realesrgan", help="modes to time per sample against batched ('' none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    print(f"{args.batch} crops of {args.crop} px, x{SCALE}, {args.threads} torch thread(s), "
          f"{args.repeats} batches after a warm-up")
    print(f"{'mode':<16}{'median s':>10}{'min s':>8}{'max s':>8}{'ms/crop':>9}")
    for mode in args.modes.split(","):
        seconds = time_mode(MODES[mode], args.batch, args.crop, args.repeats)
        median = statistics.median(seconds)
        results[mode] = {"median_s": median, "min_s": min(seconds), "max_s": max(seconds),
                         "ms_per_crop": 1000 * median / args.batch}
        print(f"{mode:<16}{median:>10.3f}{min(seconds):>8.3f}{max(seconds):>8.3f}{1000 * median / args.batch:>9.1f}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    applied = {}
    if args.apply:
        print(f"\nthe degradation alone, {args.batch} crops per batch")
        print(f"{'mode':<16}{'device':<8}{'path':<12}{'median s':>10}{'min s':>8}{'max s':>8}{'ms/crop':>9}")
    for mode in filter(None, args.apply.split(",")):
        for device in devices:
            for path, seconds in time_apply(MODES[mode], args.batch, args.crop, args.repeats, device).items():
                median = statistics.median(seconds)
                applied[f"{mode}/{device.type}/{path}"] = {"median_s": median, "min_s": min(seconds),
                                                           "max_s": max(seconds)}
                print(f"{mode:<16}{device.type:<8}{path:<12}{median:>10.3f}{min(seconds):>8.3f}{max(seconds):>8.3f}"
                      f"{1000 * median / args.batch:>9.1f}")
    print(json.dumps({"batch": args.batch, "crop": args.crop, "threads": args.threads, "results": results,
                      "apply": applied}))


if __name__ == "__main__":
    main()
