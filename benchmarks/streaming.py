"""Streamed image folders: worker memory and start-up that do not grow with the data set, and throughput
against the same images held in memory.

For each folder size (``--sizes``; JPEGs of 128 px or ``--source-px``, made once under ``--cache``: noise over
a gradient, the decoder's worst case, or ``--content photos``, random crops of the built-in photos, which
compress as photographs do) and each mode (``tasks`` and ``ray_data``: streamed, ``data.streamer`` set so;
``memory``: ``data.stream=false``; the same with ``sr-`` for super-resolution with degradations,
``SR_OVERRIDES``), one ``distgan.train`` run on an
embedded Ray with ``--workers`` CPU workers (2; DCGAN at 64 px, or SRResNet), evaluation and W&B off. With 2
workers on a 2-core host training takes every core, so the decoding competes with it; with 1, a core is spare
for the data, as on a GPU node. Measured per run:

  peak RSS    the largest resident set of any training worker (``ray::RayTrainWorker`` processes, sampled
              every 0.2 s with psutil), with its USS (pages only that process holds) beside it
  first step  seconds from the call to the first finished step (``startup.json``), and the data phase alone
  images/s    the median of the logged windows after the first (warm-up) one
  data wait   the median ``data_wait_s`` per logged window (the slowest rank's)
  CPU         CPU milliseconds per training image in the same windows, by role: the Train workers, other Ray
              worker processes (the decoding tasks, Train's controller), Ray's servers. Unlike images/s these
              hardly depend on what else the machine runs, and they say what streaming costs: on a GPU node the
              workers' CPU is mostly free, so the data keeps up when the tasks' ms/image times the images/s the
              GPUs train stays under the node's spare cores

    python benchmarks/streaming.py [--sizes 1000,16000] [--modes tasks,ray_data,memory,sr-tasks,sr-memory]
                                   [--steps 80] [--source-px 128] [--content noise|photos] [--workers 2]
                                   [--cache DIR]
    python benchmarks/streaming.py --decode-only [--sizes 1000]     # the streamers alone, no training

Prints a table and, last, one JSON line with every number. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
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
SR_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "srresnet_x4.yaml"
SR_OVERRIDES = ("model.blocks=4", "model.g_width=32", "data.resolution=96", "data.degradation.blur_sigma=[0.2,3.0]",
                "data.degradation.noise_sigma=[1,25]", "data.degradation.jpeg_quality=[30,95]")
"""Super-resolution modes (``sr-tasks``, ``sr-memory``): SRResNet x4 at its laptop size on 96 px HR crops, each
LR input blurred, noised and JPEG-compressed (Real-ESRGAN's first-order degradations): crops made by the tasks,
or on the training thread."""


def make_folder(root: Path, n: int, side: int = 128, content: str = "noise") -> Path:
    """``n`` RGB JPEGs of ``side`` px (made once; reused while the count matches)."""
    folder = root / f"jpeg{side}-{n}" if content == "noise" else root / f"{content}{side}-{n}"
    if folder.is_dir() and len(list(folder.iterdir())) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    draw = noise_images(rng, side) if content == "noise" else photo_crops(rng, side)
    for i in range(n):
        Image.fromarray(draw(i)).save(folder / f"{i:06d}.jpg", quality=90)
    return folder


def noise_images(rng: np.random.Generator, side: int):
    """Noise over a gradient: every DCT coefficient busy, so entropy decoding (which a reduced-scale decode
    cannot skip) dominates; about 3x the bytes of a photo of the same size."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)[None, :, None]

    def draw(i: int) -> np.ndarray:
        noise = rng.normal(0, 40, (side, side, 3)).astype(np.float32)
        return np.clip(ramp * (i % 7 + 1) / 7 + noise, 0, 255).astype(np.uint8)
    return draw


def photo_crops(rng: np.random.Generator, side: int):
    """Square crops (half to all of the short side, anywhere, mirrored at random) of the built-in training
    photos, resized to ``side``."""
    from distgan.data import photos

    sources = []
    for name in photos.TRAINING:
        pixels = photos.read(name)
        pixels = np.repeat(pixels[..., None], 3, axis=2) if pixels.ndim == 2 else pixels[..., :3]
        sources.append(Image.fromarray(pixels))

    def draw(i: int) -> np.ndarray:
        photo = sources[i % len(sources)]
        width, height = photo.size
        crop = int(rng.integers(min(width, height) // 2, min(width, height) + 1))
        x, y = int(rng.integers(0, width - crop + 1)), int(rng.integers(0, height - crop + 1))
        square = photo.crop((x, y, x + crop, y + crop)).resize((side, side), Image.Resampling.BICUBIC)
        return np.asarray(square.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else square)
    return draw


def role(cmdline: list[str]) -> str | None:
    """Which part of the run a process plays, from its command line: ``train`` (a Ray Train worker), ``tasks``
    (any other Ray worker process: the decoding tasks, the Train controller), ``ray`` (Ray's own servers);
    None for processes that are not the run's."""
    if not cmdline:
        return None
    if cmdline[0].startswith("ray::RayTrainWorker"):
        return "train"
    if cmdline[0].startswith("ray::") or "default_worker.py" in " ".join(cmdline):
        return "tasks"
    if any(name in " ".join(cmdline) for name in ("raylet", "gcs_server", "dashboard", "log_monitor", "ray/_private")):
        return "ray"
    return None


class ProcessSampler:
    """Peak RSS and USS of the Ray Train workers, and CPU seconds used by each role (``role``), sampled in a
    thread. CPU seconds, unlike wall time, hardly depend on what else the machine runs: they say what the
    data pipeline costs wherever it runs."""

    def __init__(self, metrics: Path, every: float = 0.2):
        self.metrics, self.every, self.peak_rss, self.peak_uss = metrics, every, 0, 0
        self.at_record: dict[int, dict[str, float]] = {}
        """CPU seconds per role when ``metrics`` first held n records, by n: the steady state lies between them."""
        self._cpu: dict[int, tuple[str, float]] = {}
        """pid -> (role, CPU seconds at the last sample)."""
        self._first: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for proc in psutil.process_iter(["cmdline", "cpu_times"]):
            kind = role(proc.info["cmdline"] or [])
            if kind is None or proc.info["cpu_times"] is None:
                continue
            used = proc.info["cpu_times"].user + proc.info["cpu_times"].system
            self._first.setdefault(proc.pid, used)
            # A Ray worker process runs tasks of several kinds over its life; it counts as what it was last seen as,
            # except that a Train worker stays one.
            kind = "train" if self._cpu.get(proc.pid, ("",))[0] == "train" else kind
            self._cpu[proc.pid] = (kind, used)
            if kind != "train":
                continue
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self.peak_rss, self.peak_uss = max(self.peak_rss, info.rss), max(self.peak_uss, info.uss)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()
            with contextlib.suppress(OSError):
                self.at_record.setdefault(self.metrics.read_bytes().count(b"\n"), self.cpu_seconds())

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per role so far, since each process was first seen."""
        out = {"train": 0.0, "tasks": 0.0, "ray": 0.0}
        for pid, (kind, used) in self._cpu.items():
            out[kind] += used - self._first[pid]
        return out

    def between(self, first: int, last: int) -> dict[str, float]:
        """CPU seconds per role from the moment ``metrics`` held ``first`` records to when it held ``last``."""
        return {kind: self.at_record[last][kind] - self.at_record[first][kind] for kind in self.at_record[last]}

    def __enter__(self) -> "ProcessSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_once(folder: Path, mode: str, steps: int, workers: int = 2) -> dict:
    import distgan
    from distgan.tracking.jsonl import read_metrics

    sr, engine = mode.startswith("sr-"), mode.removeprefix("sr-")
    data = (f"data.path={folder}", "data.channels=3", f"data.stream={engine != 'memory'}".lower(),
            f"data.streamer={engine if engine != 'memory' else 'tasks'}")
    common = (f"scaling.num_workers={workers}", "scaling.cpus_per_worker=1", f"train.steps={steps}",
              f"train.log_every={LOG_EVERY}", f"train.checkpoint_every={steps}", f"train.sample_every={steps}",
              "eval.every=0", "tracking.wandb=false")
    if sr:
        cfg = distgan.load_config(SR_CONFIG, data + common + SR_OVERRIDES)
    else:
        cfg = distgan.load_config(None, data + common + ("data.resolution=64",))
    with tempfile.TemporaryDirectory() as tmp, ProcessSampler(Path(tmp, "streaming", "metrics.jsonl")) as procs:
        result = distgan.train(cfg, name="streaming", storage=tmp, progress=False)
        marks = json.loads((result.run_dir / "startup.json").read_text())["marks"]
        records = read_metrics(result.run_dir / "metrics.jsonl")
    timed = records[1:]  # the first window holds the warm-up (and, streaming, the first chunk's start)
    # Logged windows 2..N (a sample may miss the moment the last record is written: then up to N-1).
    last = max(n for n in procs.at_record if n <= len(records))
    images = (last - 1) * LOG_EVERY * cfg.train.batch_size * cfg.scaling.num_workers
    cpu = procs.between(1, last)
    return {"files": len(os.listdir(folder)), "mode": mode,
            "peak_rss_mb": procs.peak_rss / 2**20, "peak_uss_mb": procs.peak_uss / 2**20,
            "first_step_s": marks["first_step"] - marks["start"], "data_phase_s": marks["data"] - marks["worker_start"],
            "images_per_s": statistics.median(r["images_per_s"] for r in timed),
            "data_wait_s": statistics.median(r.get("data_wait_s", 0.0) for r in timed),
            **{f"cpu_ms_per_image_{kind}": 1000 * seconds / images for kind, seconds in cpu.items()}}


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and everything under it (an embedded Ray's servers and workers)."""
    total = 0.0
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def decode_only(folder: Path, images: int = 4096, batch: int = 64, chunk: int = 16, repeats: int = 2) -> list[dict]:
    """The streamers alone, no training: ``images`` of ``folder`` decoded at 64 px, ``chunk`` batches per
    ``stream`` call as a rank hands them over, on an embedded Ray with 2 CPUs; wall time and the CPU of every
    process involved, per image. A thread of this process is the floor."""
    import ray  # only this mode starts a Ray of its own (the training modes start it through distgan.train)

    from distgan.config import DataConfig
    from distgan.data.catalog import catalog
    from distgan.data.stream import DecodeImages, ThreadStreamer
    from distgan.launch.streaming import STREAMERS

    decode = DecodeImages(catalog(DataConfig(path=str(folder), resolution=64, channels=3)), 64, 3, False)
    order = np.resize(np.random.default_rng(0).permutation(len(decode.catalog)), images)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        rows = []
        for _ in range(repeats):
            for name, streamer in [("thread", ThreadStreamer(4)),
                                   *((name, make(4, 1.0)) for name, make in sorted(STREAMERS.items()))]:
                list(streamer.stream({"index": order[:4 * batch]}, decode, batch))  # warm: task processes, imports
                cpu, started = tree_cpu_seconds(), time.perf_counter()
                for first in range(0, images, batch * chunk):
                    for _ in streamer.stream({"index": order[first:first + batch * chunk]}, decode, batch):
                        pass
                wall = time.perf_counter() - started
                rows.append({"engine": name, "images_per_s": images / wall,
                             "cpu_ms_per_image": 1000 * (tree_cpu_seconds() - cpu) / images})
                print(rows[-1], file=sys.stderr, flush=True)
        return rows
    finally:
        ray.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,16000")
    parser.add_argument("--modes", default="tasks,ray_data,memory")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--source-px", type=int, default=128,
                        help="side of the folder's JPEGs; larger than 128 takes the decoder's reduced-scale path")
    parser.add_argument("--content", choices=("noise", "photos"), default="noise",
                        help="what the JPEGs show: noise (the decoder's worst case) or crops of real photos")
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers, 1 CPU each")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "distgan-bench-folders"))
    parser.add_argument("--decode-only", action="store_true",
                        help="compare the streamers alone (a thread, the task window, Ray Data) on --sizes' first folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.decode_only:
        rows = decode_only(make_folder(Path(args.cache), int(args.sizes.split(",")[0]), args.source_px,
                                       args.content))
        print(f"\n{'engine':<9}{'images/s':>10}{'CPU ms/image':>14}")
        for r in rows:
            print(f"{r['engine']:<9}{r['images_per_s']:>10.0f}{r['cpu_ms_per_image']:>14.2f}")
        print(json.dumps(rows))
        return 0
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        folder = make_folder(Path(args.cache), n, args.source_px, args.content)
        for mode in args.modes.split(","):
            rows.append(run_once(folder, mode, args.steps, args.workers))
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"\n{args.workers} CPU worker(s) from {args.source_px} px JPEGs of {args.content} (DCGAN at 64 px; sr-: "
          f"SRResNet x4 on 96 px crops, degraded), "
          f"{args.steps} steps, windows of {LOG_EVERY} steps")
    print(f"{'files':>7} {'mode':<9}{'peak RSS MB':>12}{'USS MB':>8}{'first step s':>13}{'data s':>8}"
          f"{'images/s':>10}{'wait s':>8}   CPU ms/image: train tasks ray")
    for r in rows:
        print(f"{r['files']:>7} {r['mode']:<9}{r['peak_rss_mb']:>12.0f}{r['peak_uss_mb']:>8.0f}"
              f"{r['first_step_s']:>13.1f}{r['data_phase_s']:>8.1f}{r['images_per_s']:>10.0f}{r['data_wait_s']:>8.3f}"
              f"{r['cpu_ms_per_image_train']:>21.1f}{r['cpu_ms_per_image_tasks']:>6.1f}{r['cpu_ms_per_image_ray']:>4.1f}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
