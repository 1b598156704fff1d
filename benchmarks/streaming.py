"""Streamed image folders: worker memory and start-up that do not grow with the data set, and throughput
against the same images held in memory.

For each folder size (``--sizes``; 128 px JPEGs of noise with a gradient, made once under ``--cache``) and each
mode (``data.stream=true`` and ``false``), one ``distgan.train`` run on an embedded Ray with 2 CPU workers at
64 px, evaluation and W&B off. Measured per run:

  peak RSS    the largest resident set of any training worker (``ray::RayTrainWorker`` processes, sampled
              every 0.2 s with psutil), with its USS (pages only that process holds) beside it
  first step  seconds from the call to the first finished step (``startup.json``), and the data phase alone
  images/s    the median of the logged windows after the first (warm-up) one
  data wait   the median ``data_wait_s`` per logged window (the slowest rank's)

    python benchmarks/streaming.py [--sizes 1000,16000] [--modes stream,memory] [--steps 80] [--cache DIR]

Prints a table and, last, one JSON line with every number. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

LOG_EVERY = 10


def make_folder(root: Path, n: int) -> Path:
    """``n`` 128 px RGB JPEGs (made once; reused while the count matches)."""
    folder = root / f"jpeg128-{n}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    ramp = np.linspace(0, 255, 128, dtype=np.float32)[None, :, None]
    for i in range(n):
        noise = rng.normal(0, 40, (128, 128, 3)).astype(np.float32)
        pixels = np.clip(ramp * (i % 7 + 1) / 7 + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    return folder


class WorkerMemory:
    """Peak RSS and USS of the Ray Train worker processes on this machine, sampled in a thread."""

    def __init__(self, every: float = 0.2):
        self.every, self.peak_rss, self.peak_uss = every, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for proc in psutil.process_iter(["cmdline"]):
                cmd = proc.info["cmdline"] or []
                if not cmd or not cmd[0].startswith("ray::RayTrainWorker"):
                    continue
                try:
                    info = proc.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.peak_rss, self.peak_uss = max(self.peak_rss, info.rss), max(self.peak_uss, info.uss)

    def __enter__(self) -> "WorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_once(folder: Path, stream: bool, steps: int) -> dict:
    import distgan
    from distgan.tracking.jsonl import read_metrics

    cfg = distgan.load_config(None, (
        f"data.path={folder}", "data.resolution=64", "data.channels=3", f"data.stream={str(stream).lower()}",
        "scaling.num_workers=2", "scaling.cpus_per_worker=1", f"train.steps={steps}",
        f"train.log_every={LOG_EVERY}", f"train.checkpoint_every={steps}", f"train.sample_every={steps}",
        "eval.every=0", "tracking.wandb=false"))
    with tempfile.TemporaryDirectory() as tmp, WorkerMemory() as memory:
        result = distgan.train(cfg, name="streaming", storage=tmp, progress=False)
        marks = json.loads((result.run_dir / "startup.json").read_text())["marks"]
        records = read_metrics(result.run_dir / "metrics.jsonl")
    timed = records[1:]  # the first window holds the warm-up (and, streaming, the first chunk's start)
    return {"files": len(os.listdir(folder)), "mode": "stream" if stream else "memory",
            "peak_rss_mb": memory.peak_rss / 2**20, "peak_uss_mb": memory.peak_uss / 2**20,
            "first_step_s": marks["first_step"] - marks["start"], "data_phase_s": marks["data"] - marks["worker_start"],
            "images_per_s": statistics.median(r["images_per_s"] for r in timed),
            "data_wait_s": statistics.median(r.get("data_wait_s", 0.0) for r in timed)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,16000")
    parser.add_argument("--modes", default="stream,memory")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "distgan-bench-folders"))
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        folder = make_folder(Path(args.cache), n)
        for mode in args.modes.split(","):
            rows.append(run_once(folder, mode == "stream", args.steps))
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"\n2 CPU workers, DCGAN at 64 px from 128 px JPEGs, {args.steps} steps, windows of {LOG_EVERY} steps")
    print(f"{'files':>7} {'mode':<7}{'peak RSS MB':>12}{'USS MB':>8}{'first step s':>13}{'data s':>8}"
          f"{'images/s':>10}{'wait s':>8}")
    for r in rows:
        print(f"{r['files']:>7} {r['mode']:<7}{r['peak_rss_mb']:>12.0f}{r['peak_uss_mb']:>8.0f}"
              f"{r['first_step_s']:>13.1f}{r['data_phase_s']:>8.1f}{r['images_per_s']:>10.0f}{r['data_wait_s']:>8.3f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
