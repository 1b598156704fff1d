"""Steady state over a long run: does memory or per-step time grow with the number of steps run?

Runs the default DCGAN for ``--steps`` steps (2,000 by default) two ways and samples, at every log step,
the resident memory (RSS) of the training process and the images/s of the window just ended:

  in-process   distgan's per-worker loop (``distgan.runtime.loop.Trainer``) in this process on a world-size-1
               gloo group, RSS of this process
  ray x1       ``distgan.train`` on an embedded local Ray with one worker; the driver samples the RSS of
               the Ray Train worker process (found by its process title) every ``--poll`` seconds

After ``--warmup`` steps it fits a line to RSS against steps and reports the slope (KiB per 1,000 steps)
and the change from the first to the last sample; and the median images/s of the first and last fifth of
the windows. A leak of one small tensor per step (4 KiB) would show as ~4,000 KiB per 1,000 steps.

    python benchmarks/steady_state.py [--steps 2000] [--log-every 50] [--warmup 500] [--skip-ray]
                                      [--set KEY=VALUE ...]

Prints a table and, last, one JSON line. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

COMMON = ("tracking.wandb=false", "eval.every=0", "scaling.cpus_per_worker=1", "scaling.num_workers=1")


def config(args):
    from distgan import load_config

    return load_config(None, COMMON + tuple(args.set) + (
        f"train.steps={args.steps}", f"train.log_every={args.log_every}",
        f"train.checkpoint_every={args.steps}", f"train.sample_every={args.steps}"))


def slope_kib_per_1000(samples: list[tuple[int, float, float]], warmup: int) -> tuple[float, float]:
    """Least-squares slope of RSS (KiB) over steps after ``warmup``, and last minus first RSS there."""
    kept = [(s, rss) for s, rss, _ in samples if s > warmup]
    if len(kept) < 2:
        return float("nan"), float("nan")
    n = len(kept)
    mean_s = sum(s for s, _ in kept) / n
    mean_r = sum(r for _, r in kept) / n
    var = sum((s - mean_s) ** 2 for s, _ in kept)
    slope = sum((s - mean_s) * (r - mean_r) for s, r in kept) / var
    return slope * 1000 / 1024, (kept[-1][1] - kept[0][1]) / 1024


def rates_first_last(samples: list[tuple[int, float, float]], warmup: int) -> tuple[float, float]:
    rates = [rate for s, _, rate in samples if s > warmup and rate == rate]
    fifth = max(1, len(rates) // 5)
    return statistics.median(rates[:fifth]), statistics.median(rates[-fifth:])


class _Session:
    """World-size-1 session that samples this process's RSS at every report (every log step)."""

    rank, world_size, use_gpu, device, streamer = 0, 1, False, torch.device("cpu"), None

    def __init__(self):
        self.samples: list[tuple[int, float, float]] = []
        self.process = psutil.Process()

    def preemption_notice(self):
        return None  # a benchmark's nodes are not preempted

    def latest_checkpoint(self):
        import contextlib

        return contextlib.nullcontext(None)

    def report(self, metrics, checkpoint_dir=None, name=None) -> None:
        if "images_per_s" in metrics:
            self.samples.append((metrics["step"], float(self.process.memory_info().rss),
                                 float(metrics["images_per_s"])))


def in_process(cfg) -> list[tuple[int, float, float]]:
    from distgan.core.loopback_group import init_local_group
    from distgan.runtime.loop import RunInfo
    from distgan.tasks import build_trainer

    init_local_group("gloo")  # a world of one, its store and sockets on 127.0.0.1 only
    torch.set_num_threads(cfg.scaling.cpus_per_worker)
    session = _Session()
    with tempfile.TemporaryDirectory() as tmp:
        build_trainer(cfg, RunInfo(Path(tmp), "steady", "x"), session).run()
    return session.samples


def _train_worker_rss() -> float:
    """RSS of the Ray Train worker process(es), found by the title Ray gives them; 0 before they exist."""
    total = 0.0
    for p in psutil.process_iter(["cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or ())
        if cmd.startswith("ray::RayTrainWorker") and p.info["memory_info"] is not None:
            total += p.info["memory_info"].rss
    return total


def on_ray(cfg, poll_s: float) -> list[tuple[int, float, float]]:
    import distgan
    from distgan.tracking.jsonl import read_metrics

    polled: list[tuple[float, float]] = []
    done = threading.Event()

    def poll() -> None:
        while not done.wait(poll_s):
            polled.append((time.time(), _train_worker_rss()))

    with tempfile.TemporaryDirectory() as tmp:
        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            result = distgan.train(cfg, name="steady", storage=tmp, progress=False)
        finally:
            done.set()
            thread.join()
        records = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "images_per_s" in r]
    # metrics.jsonl has no wall time per record, so each poll is matched to the step reached by then,
    # interpolated between the run's first and last logged steps by the polls' own times.
    polled = [(t, rss) for t, rss in polled if rss > 0]
    if not polled or not records:
        return []
    t0, t1 = polled[0][0], polled[-1][0]
    steps = records[-1]["step"]
    rates = {r["step"]: r["images_per_s"] for r in records}
    out = []
    for t, rss in polled:
        step = int(steps * (t - t0) / max(t1 - t0, 1e-9))
        window = min(rates, key=lambda s: abs(s - step))
        out.append((step, rss, float(rates[window])))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=500, help="steps before the fit starts")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between RSS polls of the Ray worker")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = config(args)
    start = time.perf_counter()
    rows = [("in-process", in_process(cfg))]
    if not args.skip_ray:
        rows.append(("ray x1", on_ray(cfg, args.poll)))
    print(f"\ndefault DCGAN, {args.steps} steps, batch {cfg.train.batch_size}, fp32, 1 torch thread; "
          f"fit after step {args.warmup}{'; ' + ' '.join(args.set) if args.set else ''}")
    print(f"{'variant':<12}{'samples':>8}{'RSS MiB':>9}{'slope KiB/1k steps':>20}{'change KiB':>12}"
          f"{'img/s first':>13}{'img/s last':>12}")
    result = []
    for name, samples in rows:
        slope, change = slope_kib_per_1000(samples, args.warmup)
        first, last = rates_first_last(samples, args.warmup)
        rss = samples[-1][1] / 2**20 if samples else float("nan")
        result.append({"variant": name, "samples": len(samples), "rss_mib_end": rss, "slope_kib_per_1000_steps": slope,
                       "change_kib": change, "images_per_s_first_fifth": first, "images_per_s_last_fifth": last,
                       "trace": [(s, round(r / 1024)) for s, r, _ in samples]})
        print(f"{name:<12}{len(samples):>8}{rss:>9.0f}{slope:>20.0f}{change:>12.0f}{first:>13.0f}{last:>12.0f}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    print(json.dumps({"steps": args.steps, "set": args.set, "rows": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
