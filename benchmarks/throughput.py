"""Training throughput: distgan against the plain PyTorch loop a user would write, and per-worker scaling.

For one model (``--model default``: the built-in DCGAN on 16-px digits; ``large``: the same family at 128
channels on 32 px, where compute dominates) it measures images/s (real images D consumes; one G step per D
step) of:

  plain        a hand-written single-process loop: the same G and D modules and init, torch's Adam with the
               same hyperparameters, the same non-saturating loss, fp32, the same batch and thread count;
               no Ray, no DeepSpeed, no EMA, no metrics
  in-process   distgan's per-worker loop (``distgan.runtime.loop.Trainer``) in this process on a world-size-1
               gloo group: DeepSpeed engines, EMA (``--ema``), metrics at log steps, no Ray
  ray xN       ``distgan.train`` on an embedded local Ray with N workers (``--workers``); images/s is the
               global rate, and per worker it is that divided by N
  plain+heap   the plain loop again with the glibc heap settings distgan's CPU workers apply
               (``scaling.tune_malloc``, on by default): "vs plain" compares with the loop a user writes,
               "same heap" with the loop on the same heap settings, i.e. distgan's own overhead

Each variant runs ``--warmup`` steps, then ``--repeats`` windows of ``--steps`` steps; the table gives the
median window and the ratio to plain. distgan's windows are the loop's own log windows
(``train.log_every = --steps``; ``images_per_s`` in metrics.jsonl), which include what a real run does at
a log step (one stats all-reduce, the grad-norm sync). On CPU every worker gets ``scaling.cpus_per_worker``
torch threads (1 here); two workers share this machine's cores, so per-worker scaling on a 2-core machine
says what the synchronisation costs, not what two nodes would give.

    python benchmarks/throughput.py [--model default|large] [--steps 100] [--warmup 100] [--repeats 5]
                                    [--workers 1,2] [--ema on|off] [--skip-ray] [--set KEY=VALUE ...]

Prints a table and, last, one JSON line. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from distgan.runtime.malloc import keep_freed_memory

MODELS = {
    "default": (),
    "large": ("model.g_width=128", "model.d_width=128", "data.resolution=32"),
}
COMMON = ("tracking.wandb=false", "eval.every=0", "scaling.cpus_per_worker=1")


def config(args, workers: int, *extra: str):
    from distgan import load_config

    steps = args.warmup + args.repeats * args.steps
    return load_config(None, MODELS[args.model] + COMMON + tuple(args.set) + (
        f"scaling.num_workers={workers}", f"train.steps={steps}", f"train.log_every={args.steps}",
        f"train.checkpoint_every={steps}", f"train.sample_every={steps}",
        f"ema.enabled={'true' if args.ema == 'on' else 'false'}") + extra)


# -- the plain loop -------------------------------------------------------------------------------------


def plain_loop(cfg, args) -> list[float]:
    """images/s of each timed window of a minimal fp32 GAN loop on the same modules."""
    from distgan import data, models

    torch.set_num_threads(cfg.scaling.cpus_per_worker)
    x = data.load_dataset(cfg.data).x
    shape = tuple(x.shape[1:])
    torch.manual_seed(cfg.train.seed)
    g = models.build_generator(cfg.model, shape)
    d = models.build_discriminator(cfg.model, shape)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.optim.g.lr, betas=cfg.optim.g.betas, eps=cfg.optim.g.eps)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.optim.d.lr, betas=cfg.optim.d.betas, eps=cfg.optim.d.eps)
    batch, latent = cfg.train.batch_size, cfg.model.latent_dim
    gen = torch.Generator().manual_seed(1)

    def step() -> None:
        real = x[torch.randint(len(x), (batch,), generator=gen)]
        with torch.no_grad():
            fake = g(torch.randn(batch, latent, generator=gen))
        loss_d = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        d.requires_grad_(False)
        loss_g = F.softplus(-d(g(torch.randn(batch, latent, generator=gen)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        d.requires_grad_(True)

    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(batch * args.steps / (time.perf_counter() - start))
    return rates


# -- distgan ----------------------------------------------------------------------------------------------


class _Session:
    """The world-size-1 session ``distgan.runtime.loop`` needs, without Ray."""

    rank, world_size, use_gpu, device, streamer = 0, 1, False, torch.device("cpu"), None

    def preemption_notice(self):
        return None  # a benchmark's nodes are not preempted

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Optional[Path]]:
        yield None

    def report(self, metrics: dict, checkpoint_dir: Optional[Path] = None, name: Optional[str] = None) -> None:
        pass


def windows(run_dir: Path, args) -> list[float]:
    """The loop's logged images/s per window, the warm-up window(s) dropped."""
    from distgan.tracking.jsonl import read_metrics

    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if "images_per_s" in r]
    return [r["images_per_s"] for r in records if r["step"] > args.warmup]


def in_process(cfg, args) -> list[float]:
    from distgan.core.loopback_group import init_local_group
    from distgan.runtime.loop import RunInfo
    from distgan.tasks import build_trainer

    init_local_group("gloo")  # a world of one, its store and sockets on 127.0.0.1 only
    with tempfile.TemporaryDirectory() as tmp:
        build_trainer(cfg, RunInfo(Path(tmp), "throughput", "x"), _Session()).run()
        return windows(Path(tmp), args)


def on_ray(cfg, args) -> list[float]:
    import distgan

    with tempfile.TemporaryDirectory() as tmp:
        result = distgan.train(cfg, name="throughput", storage=tmp, progress=False)
        return windows(result.run_dir, args)


# -- the report -------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="default")
    parser.add_argument("--steps", type=int, default=100, help="steps per timed window")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up steps, a multiple of --steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--ema", choices=("on", "off"), default="on")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for distgan's runs, e.g. train.reuse_fakes=true")
    args = parser.parse_args(argv)
    if args.warmup % args.steps:
        parser.error("--warmup must be a multiple of --steps (distgan's windows are its log windows)")
    start = time.perf_counter()
    cfg = config(args, 1)
    tuned = cfg.scaling.tune_malloc
    # Rows: (name, workers, glibc heap tuned?, windows). The heap setting is process-wide and cannot be
    # undone, so everything on the system heap runs first in this process.
    rows = [("plain", 1, False, plain_loop(cfg, args))]
    if not tuned:
        rows.append(("in-process", 1, False, in_process(cfg, args)))
    if keep_freed_memory():  # what distgan's workers do with scaling.tune_malloc (the default)
        rows.append(("plain+heap", 1, True, plain_loop(cfg, args)))
    if tuned:
        rows.append(("in-process", 1, True, in_process(cfg, args)))
    if not args.skip_ray:
        for workers in (int(w) for w in args.workers.split(",")):
            rows.append((f"ray x{workers}", workers, tuned, on_ray(config(args, workers), args)))
    plain = {heap: statistics.median(rates) for name, _, heap, rates in rows if name.startswith("plain")}
    print(f"\n{args.model} DCGAN, batch {cfg.train.batch_size}/worker, fp32, 1 torch thread per worker, "
          f"EMA {args.ema}{', ' + ' '.join(args.set) if args.set else ''}; {args.repeats} windows of {args.steps} steps after {args.warmup} warm-up steps")
    print("plain+heap: the plain loop with the glibc heap settings of scaling.tune_malloc; 'same heap' compares "
          "each row with the plain loop on the same heap settings (distgan's own overhead)")
    print(f"{'variant':<12}{'heap':>7}{'images/s':>10}{'per worker':>12}{'vs plain':>10}{'same heap':>11}"
          f"{'min':>8}{'max':>8}")
    result = []
    for name, workers, heap, rates in rows:
        median = statistics.median(rates)
        same = median / plain[heap] if heap in plain else float("nan")
        result.append({"variant": name, "workers": workers, "heap_tuned": heap, "median": median,
                       "per_worker": median / workers, "ratio_to_plain": median / plain[False],
                       "ratio_same_heap": same, "windows": rates})
        print(f"{name:<12}{'tuned' if heap else 'system':>7}{median:>10.0f}{median / workers:>12.0f}"
              f"{median / plain[False]:>10.3f}{same:>11.3f}{min(rates):>8.0f}{max(rates):>8.0f}")
    print(f"wall time {time.perf_counter() - start:.0f} s")
    print(json.dumps({"model": args.model, "ema": args.ema, "set": args.set, "batch": cfg.train.batch_size,
                      "rows": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
