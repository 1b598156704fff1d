"""Memory per worker: what each ZeRO stage keeps, and the largest HR crop that fits. Measured, not derived.

Part 1 builds real DeepSpeed engines with ``distgan.runtime.engines.build_engine`` in 1 and 2 processes (a gloo group
on 127.0.0.1; DeepSpeed picks its CPU accelerator), runs two forward/backward/steps on a tiny batch (the first
creates Adam's state, so the second holds all a training step does), and counts in every rank the bytes of each
distinct storage that rank holds (deduplicated by address, so views of one flat buffer count once, alignment
padding included). In the second step:

  params     the module's parameters; under ZeRO-3 the rank's partition ``p.ds_tensor`` plus the parameters
             DeepSpeed keeps whole on every rank (under ``stage3_param_persistence_threshold`` elements)
  master     the optimizer's own fp32 copy of the weights when it is not the module's
  optimizer  the inner torch optimizer's ``state``: Adam's exp_avg, exp_avg_sq, step
             (these three: the larger of end of backward and after step)
  grads      ``p.grad`` and the ZeRO optimizer's gradient partitions, at the end of backward, before step
  buckets    DeepSpeed's gradient-reduction buckets (``ipg_buckets``), the most seen at any sample
  peak bwd   the largest sum of everything above sampled during backward (every few gradient accumulations)

``total`` is params + master + grads + optimizer; buckets are shown apart because their size is a config
value (``deepspeed.bucket_size``, 5e7 elements by default; DeepSpeed's own is 5e8), not a property of the model. On CPU ``torch.empty`` commits
only the pages that are written, so buckets cost address space here; on a GPU they are allocated in full.
Not seen: transient copies inside collectives (ZeRO-0 flattens gradients for its all-reduce after backward).

Part 2 measures activation memory of RRDBNet (published size) as the bytes autograd saves for backward in one
forward (``torch.autograd.graph.saved_tensors_hooks``, parameters excluded, shared storages once) on CPU,
batch 1, at three LR crops; fits bytes = a + b * HR pixels on two and checks the third; then sizes the largest
square HR crop (a multiple of ``model.scale``: G needs whole LR pixels) per worker with 2 workers, so that
model state (part 1) + activations fit a memory budget. The true peak also holds transient buffers (gradients
of activations in flight, conv workspaces, the loss); where CUDA is available, one forward+backward at the
computed crop is measured with ``torch.cuda.max_memory_allocated`` and printed beside the estimate.

``stylegan2_256`` and ``stylegan2_1024`` are the G and D of ``configs/stylegan2_256.yaml`` / ``_1024.yaml``
(StyleGAN2-ADA's paper256 and paper1024 networks: G 24.8M and 30.4M parameters, D 24.0M and 29.0M), measured like the
DCGAN on a batch of 2 at their full resolution (1 at 1024 px).

    python benchmarks/memory.py [--models dcgan,rrdb,stylegan2_256,stylegan2_1024] [--stages 0,1,2,3]
                                [--workers 1,2|1:2,2] [--budget-gib 24]
                                [--precisions fp32,bf16] [--persistence-threshold N] [--quick] [--verbose]

Prints tables and, last, one JSON line with every number. Asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch
import yaml
from torch import nn

# Part 2 lives beside this script; put its folder on the path when loaded as a module (tests) too.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _activations import (RRDB_PUBLISHED, RRDB_QUICK, SavedTensorBytes, activation_fit,  # noqa: E402,F401
                          crop_table, cuda_check, largest_crop, rrdb_model_config)

MiB, GiB = 2**20, 2**30
TRAIN_LR_SIDE = 8
"""LR side of the tiny batch part 1 steps on (HR 32 px at x4): it only has to produce gradients."""
BUDGETS_GIB = (24, 40, 80)
CATEGORIES = ("params", "master", "grads", "optimizer")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STYLEGAN2 = {f"stylegan2_{r}": CONFIGS / f"stylegan2_{r}.yaml" for r in (256, 1024)}
MODELS = ("dcgan", "rrdb", *STYLEGAN2)


@dataclass(frozen=True)
class Job:
    model: str  # dcgan, rrdb, stylegan2_256 or stylegan2_1024
    net: str  # g or d
    stage: int
    precision: str


# --------------------------------------------------------------------------
# Part 1: bytes a rank holds, by category
# --------------------------------------------------------------------------


def job_config(job: Job, quick: bool, persistence_threshold: int | None = None):
    """The Config of one measurement: the project's engine settings unless ``persistence_threshold`` is given.
    Only the model, engine and optimizer sections matter here, so it is built without full validation."""
    from distgan.config import Config, build_section

    data = {}
    if job.model in STYLEGAN2:  # the shipped config's networks, at its resolution
        shipped = yaml.safe_load(STYLEGAN2[job.model].read_text())
        model, data = shipped["model"], {k: shipped["data"][k] for k in ("channels", "resolution")}
    elif job.model == "dcgan":
        model = {"family": "dcgan"}
    else:
        model = {"family": "rrdb", **(RRDB_QUICK if quick else RRDB_PUBLISHED)}
    deepspeed = {"zero_stage": job.stage, "precision": job.precision}
    if persistence_threshold is not None:
        deepspeed["param_persistence_threshold"] = persistence_threshold
    # Batch 1 at 1024 px: a batch of 2 holds about 11 GB of activations per process on CPU, which these
    # numbers do not count (they are model state) and which two processes cannot hold on a 24 GB machine.
    batch = 1 if job.model in ("rrdb", "stylegan2_1024") else 2
    return build_section(Config, {"model": model, "data": data, "train": {"batch_size": batch},
                                  "deepspeed": deepspeed}, "")


def build_network(job: Job, cfg) -> tuple[nn.Module, torch.Tensor]:
    """The network and a tiny batch for it: default DCGAN on 16 px digits, a StyleGAN2 at its config's
    resolution, or RRDBNet on a 8x8 LR crop."""
    from distgan.data import data_shape
    from distgan.models import build_discriminator, build_generator

    n = cfg.train.batch_size
    if job.model == "rrdb":
        shape = (3, TRAIN_LR_SIDE * cfg.model.scale, TRAIN_LR_SIDE * cfg.model.scale)
        return build_generator(cfg.model, shape), torch.randn(n, 3, TRAIN_LR_SIDE, TRAIN_LR_SIDE)
    # The shipped StyleGAN2 configs stream an RGB folder; their section here names no data set to ask.
    shape = (cfg.data.channels, cfg.data.resolution, cfg.data.resolution) if job.model in STYLEGAN2 \
        else data_shape(cfg.data)
    if job.net == "g":
        return build_generator(cfg.model, shape), torch.randn(n, cfg.model.latent_dim)
    return build_discriminator(cfg.model, shape), torch.randn(n, *shape)


def inner_optimizer(engine) -> torch.optim.Optimizer:
    """The torch optimizer under DeepSpeed's wrappers (ZeRO, BF16_Optimizer); ZeRO-0 fp32 uses it bare."""
    opt = engine.optimizer
    while not isinstance(opt, torch.optim.Optimizer) or type(opt).__module__.startswith("deepspeed.runtime"):
        opt = opt.optimizer
    return opt


def walk_tensors(obj, path: str = "engine", depth: int = 0,
                 seen: set | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor (and its ``.grad``) reachable from DeepSpeed's objects through attributes, lists and dicts.
    Modules are skipped: their parameters are counted directly."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        yield path, obj
        if obj.is_leaf and obj.grad is not None:
            yield path + ".grad", obj.grad
        return
    if depth > 6 or id(obj) in seen or (isinstance(obj, nn.Module) and depth > 0):
        return
    seen.add(id(obj))
    if isinstance(obj, dict):
        items: Iterable = ((f"[{k}]" if isinstance(k, (str, int)) else "[*]", v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(obj))
    elif type(obj).__module__.startswith("deepspeed") or depth == 0:
        items = ((f".{k}", v) for k, v in vars(obj).items())
    else:
        return
    for key, value in items:
        yield from walk_tensors(value, path + key, depth + 1, seen)


def held_bytes(engine, detail: dict | None = None) -> dict[str, int]:
    """Bytes this rank holds per category; each storage counted once, in the first category that claims it.

    The order decides shared storages: a parameter is a parameter even when the optimizer also points at it
    (ZeRO-0 fp32), and a gradient that is a view of a reduction bucket is counted as the bucket.
    """
    owner: dict[int, tuple[str, int, str]] = {}

    def claim(t, category: str, where: str) -> None:
        if t is None or t.device.type == "meta" or t.numel() == 0:
            return
        storage = t.untyped_storage()
        if storage.data_ptr() and storage.data_ptr() not in owner:
            owner[storage.data_ptr()] = (category, storage.nbytes(), where)

    inner = inner_optimizer(engine)
    params = list(engine.module.parameters())
    for p in params:
        claim(getattr(p, "ds_tensor", None), "params", "p.ds_tensor")
        claim(p, "params", "p")
    for state in inner.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                claim(value, "optimizer", "optimizer.state")
    # The weights the optimizer updates: its param groups, or (ZeRO-3 empties those outside step) its state keys.
    masters = [p for group in inner.param_groups for p in group["params"]] + list(inner.state)
    for p in masters:
        claim(p, "master", "optimizer.param_groups")
    walked = list(walk_tensors(engine))
    for path, t in walked:
        if "ipg" in path or "bucket" in path:
            claim(t, "buckets", path)
        elif "fp32_partitioned_groups" in path or "single_partition_of_fp32" in path or "fp32_groups_flat" in path:
            claim(t, "master", path)  # the fp32 masters by name, for the moments ZeRO-3 hides them from the optimizer
    for p in params + masters:
        claim(p.grad, "grads", "p.grad")
    for path, t in walked:
        claim(t, "grads" if "grad" in path.rsplit(".", 1)[-1] or path.endswith(".grad") else "other", path)
    totals = dict.fromkeys((*CATEGORIES, "buckets", "other"), 0)
    for category, nbytes, where in owner.values():
        totals[category] += nbytes
        if detail is not None:
            detail[f"{category}: {where}"] = detail.get(f"{category}: {where}", 0) + nbytes
    return totals


class BackwardPeak:
    """Samples ``held_bytes`` during backward, after every few gradient accumulations, and keeps the largest."""

    def __init__(self, engine, samples: int = 12):
        self.engine, self.calls, self.peak = engine, 0, {}
        params = [p for p in engine.module.parameters() if p.requires_grad]
        self.every = max(1, len(params) // samples)
        self.handles = [p.register_post_accumulate_grad_hook(self._sample) for p in params]

    def _sample(self, _param) -> None:
        self.calls += 1
        if self.calls % self.every == 0:
            held = held_bytes(self.engine)
            if sum(held.values()) > sum(self.peak.values(), 0):
                self.peak = held

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def measure_job(job: Job, world: int, quick: bool, verbose: bool, persistence_threshold: int | None = None) -> dict:
    """One engine, two forward/backward/steps; what this rank holds in the second, and when."""
    from distgan.runtime import engines

    cfg = job_config(job, quick, persistence_threshold)
    torch.manual_seed(0)
    module, batch = build_network(job, cfg)
    n_params = sum(p.numel() for p in module.parameters())
    start = time.perf_counter()
    engine = engines.build_engine(module, cfg, job.net, world, use_gpu=False)
    batch = batch.to(engines.compute_dtype(cfg, job.net))
    # A first step creates Adam's state, so the measured second backward holds everything a training step does.
    engine.backward(engine(batch).float().square().mean())
    engine.step()
    peak = BackwardPeak(engine)
    out = engine(batch)
    engine.backward(out.float().square().mean())
    peak.remove()
    detail_backward, detail_step = {}, {}
    after_backward = held_bytes(engine, detail_backward)
    engine.step()
    after_step = held_bytes(engine, detail_step)
    # ZeRO-3 gathers its persistent (small) parameters again after step: take the larger moment.
    row = {**asdict(job), "workers": world, "n_params": n_params,
           **{c: max(after_backward[c], after_step[c]) for c in ("params", "master", "optimizer")},
           "grads": after_backward["grads"],
           "buckets": max(peak.peak.get("buckets", 0), after_backward["buckets"], after_step["buckets"]),
           "other": max(after_backward["other"], after_step["other"]),
           "peak_backward": sum(peak.peak.values()) if peak.peak else sum(after_backward.values()),
           "seconds": time.perf_counter() - start}
    row["total"] = sum(row[c] for c in CATEGORIES)
    if verbose:
        row["detail"] = {k: max(detail_backward.get(k, 0), detail_step.get(k, 0))
                         for k in {*detail_backward, *detail_step}}
    del engine, peak, out, module
    gc.collect()
    return row


def _rank_main(rank: int, world: int, port: int, jobs: list[Job], quick: bool, verbose: bool, out_dir: str,
               persistence_threshold: int | None = None):
    from distgan.core.loopback_group import init_local_group

    # The group's store and gloo sockets on 127.0.0.1 only; DeepSpeed adopts the group.
    init_local_group("gloo", rank, world, port)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    import deepspeed

    for name in ("DeepSpeed", "deepspeed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    deepspeed.init_distributed("gloo", verbose=False)
    rows = []
    for job in jobs:
        rows.append({**measure_job(job, world, quick, verbose, persistence_threshold), "rank": rank})
        if rank == 0:
            # Rank 0's numbers as they come: a long invocation that dies (memory) leaves them in the log.
            print(f"  measured {job.model}/{job.net.upper()} ZeRO-{job.stage} {job.precision} on {world} "
                  f"worker(s) in {rows[-1]['seconds']:.1f} s: rank 0 holds "
                  + ", ".join(f"{c} {rows[-1][c] / MiB:.1f}" for c in (*CATEGORIES, "total")) + " MiB",
                  file=sys.stderr, flush=True)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(rows))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_world(world: int, jobs: list[Job], quick: bool, verbose: bool,
                  persistence_threshold: int | None = None) -> list[dict]:
    """Run every job in one group of ``world`` processes; per job, the largest count over the ranks."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_rank_main, nprocs=world,
                 args=(world, free_port(), jobs, quick, verbose, out_dir, persistence_threshold))
        per_rank = [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(world)]
    rows = []
    for ranks in zip(*per_rank):
        row = dict(ranks[0])
        for key in (*CATEGORIES, "buckets", "other", "peak_backward", "total", "seconds"):
            row[key] = max(r[key] for r in ranks)
        row.pop("rank")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def print_state_table(rows: list[dict], persistence_threshold: int | None) -> None:
    print("\nPart 1: bytes held per worker (MiB = 2^20 B; the larger rank), in the 2nd step of a real engine "
          "(the 1st creates Adam's state)")
    print("  grads: end of backward, before step; params, master, optimizer: the larger of that and after step;")
    print("  total = those four; buckets: DeepSpeed's reduction buckets (reduce_bucket_size), apart;")
    print("  peak bwd: the largest sum of everything held, sampled during backward (activations not included)")
    threshold = "1e5 (the config's default)" if persistence_threshold is None else persistence_threshold
    print(f"  ZeRO-3 keeps every parameter under {threshold} elements whole on every rank, beside its partition "
          f"(stage3_param_persistence_threshold)")
    head = (f"{'model':<17}{'prec':<6}{'stage':>5}{'workers':>8}{'params':>10}{'master':>10}{'grads':>10}"
            f"{'optim':>10}{'total':>10}{'buckets':>10}{'peak bwd':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model'] + '/' + r['net'].upper():<17}{r['precision']:<6}{r['stage']:>5}{r['workers']:>8}"
              + "".join(f"{r[k] / MiB:>10.2f}" for k in (*CATEGORIES, "total", "buckets", "peak_backward")))


def ratios(rows: list[dict]) -> list[dict]:
    """2-worker over 1-worker bytes, per model, network, precision and stage."""
    out = []
    index = {(r["model"], r["net"], r["precision"], r["stage"], r["workers"]): r for r in rows}
    for (model, net, precision, stage, world), r in index.items():
        one = index.get((model, net, precision, stage, 1))
        if world == 1 or one is None:
            continue
        out.append({"model": model, "net": net, "precision": precision, "stage": stage, "workers": world,
                    **{k: (r[k] / one[k] if one[k] else None) for k in (*CATEGORIES, "total")}})
    return out


def print_ratios(table: list[dict]) -> None:
    if not table:
        return
    print("\nPer-worker bytes, N workers / 1 worker (ZeRO-1 should halve optimizer state at 2, ZeRO-2 also grads,"
          " ZeRO-3 also params)")
    print(f"{'model':<17}{'prec':<6}{'stage':>5}{'workers':>8}" + "".join(f"{k:>10}" for k in (*CATEGORIES, "total")))
    for r in table:
        cells = "".join(f"{r[k]:>10.3f}" if r[k] is not None else f"{'-':>10}" for k in (*CATEGORIES, "total"))
        print(f"{r['model'] + '/' + r['net'].upper():<17}{r['precision']:<6}{r['stage']:>5}{r['workers']:>8}{cells}")


def print_activations(fits: list[dict], crops: list[dict], budgets: list[float], scale: int, quick: bool) -> None:
    name = "RRDBNet " + ("quick" if quick else "published") + " ({blocks} blocks, {g_width} features, growth "\
        "{growth}, x{scale})".format(**(RRDB_QUICK if quick else RRDB_PUBLISHED))
    print(f"\nPart 2: activation bytes of {name}, batch 1, CPU")
    print("  = the bytes autograd saves for backward in one forward (parameters excluded, shared storages once);")
    print("  the true peak also holds transient buffers (activation gradients in flight, workspaces, the loss)")
    print(f"{'prec':<6}{'ckpt':<6}" + "".join(f"{'HR ' + str(s):>12}" for s in fits[0]["hr_sides"])
          + f"{'B/HR px':>10}{'fit err':>10}")
    for f in fits:
        print(f"{f['precision']:<6}{str(f['checkpointing']).lower():<6}"
              + "".join(f"{b / MiB:>9.1f}MiB" for b in f["bytes"])
              + f"{f['bytes_per_hr_pixel']:>10.0f}{f['check_relative_error']:>10.2e}")
    if not crops:
        print("(no rrdb engines measured in part 1: no crop sizes)")
        return
    print(f"\nLargest square HR crop per worker (a multiple of the scale, {scale}: G needs whole LR pixels; the vgg "
          f"and unet discriminators add their own constraints), batch 1, with G's model state from part 1 on "
          f"{crops[0]['workers']} workers, DeepSpeed's reduction buckets included (in brackets: without them).")
    print("  G alone: in GAN training D, the perceptual loss's VGG19 and the losses add their own state and "
          "activations on the same crop.")
    print(f"{'prec':<6}{'ckpt':<6}{'stage':>5}{'state GiB':>10}{'bkt GiB':>8}"
          + "".join(f"{f'{b:g} GiB':>14}" for b in budgets))
    for c in crops:
        cells = "".join(f"{c['crops'][f'{b:g}']:>7} [{c['crops_without_buckets'][f'{b:g}']:>4}]" for b in budgets)
        print(f"{c['precision']:<6}{str(c['checkpointing']).lower():<6}{c['stage']:>5}{c['state_bytes'] / GiB:>10.3f}"
              f"{c['bucket_bytes'] / GiB:>8.2f}{cells}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dcgan,rrdb",
                        help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--stages", default="0,1,2,3", help="ZeRO stages")
    parser.add_argument("--workers", default="1,2",
                        help="world sizes; W:S+S measures world W at those stages only (e.g. 1:2,2)")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="engine precisions of part 1 (DCGAN is measured in the first only)")
    parser.add_argument("--budget-gib", type=float, default=24.0, help="memory per worker (24: an A10/RTX 3090)")
    parser.add_argument("--quick", action="store_true", help=f"a small RRDB ({RRDB_QUICK}) for tests")
    parser.add_argument("--persistence-threshold", type=int, default=None, metavar="N",
                        help="ZeRO-3: keep only parameters under N elements whole on every rank (DeepSpeed's "
                             "stage3_param_persistence_threshold; default: the project's config, i.e. 1e5)")
    parser.add_argument("--verbose", action="store_true", help="where each category's storages were found")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; choose from {', '.join(MODELS)}")
    args.stages = [int(s) for s in args.stages.split(",")]
    # world -> its stages: W alone takes every --stages entry, W:S+S only those.
    args.workers = {int(w.split(":")[0]): ([int(s) for s in w.split(":")[1].split("+")] if ":" in w else args.stages)
                    for w in args.workers.split(",")}
    args.precisions = [p for p in args.precisions.split(",") if p]
    return args


def jobs_for(args, stages: list[int]) -> list[Job]:
    both = [("g", args.precisions[:1]), ("d", args.precisions[:1])]
    nets = {"dcgan": both, "rrdb": [("g", args.precisions)], **{name: both for name in STYLEGAN2}}
    return [Job(model, net, stage, precision) for model in args.models for net, precisions in nets[model]
            for precision in precisions for stage in stages]


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    rows = []
    for world, stages in args.workers.items():
        rows += measure_world(world, jobs_for(args, stages), args.quick, args.verbose, args.persistence_threshold)
    rows.sort(key=lambda r: (r["model"], r["net"] != "g", r["precision"] != "fp32", r["stage"], r["workers"]))
    print_state_table(rows, args.persistence_threshold)
    if args.verbose:
        for r in rows:
            print(f"\n{r['model']}/{r['net']} {r['precision']} ZeRO-{r['stage']} x{r['workers']}:")
            for where, nbytes in sorted(r.pop("detail").items(), key=lambda kv: -kv[1]):
                print(f"  {nbytes / MiB:>10.3f} MiB  {where}")
    table = ratios(rows)
    print_ratios(table)

    result = {"rows": rows, "ratios": table, "persistence_threshold": args.persistence_threshold}
    if "rrdb" in args.models:
        budgets = sorted({args.budget_gib, *BUDGETS_GIB})
        scale = rrdb_model_config(args.quick, False).scale
        fits = [activation_fit(args.quick, p, c) for p in ("fp32", "bf16") for c in (False, True)]
        crops = crop_table(rows, fits, budgets, scale)
        print_activations(fits, crops, budgets, scale, args.quick)
        result.update(activations=fits, crops=crops, budgets_gib=budgets)
        if torch.cuda.is_available():
            result["cuda"] = cuda_check(args, fits, crops)
    result["wall_s"] = time.perf_counter() - start
    print(f"\nwall time {result['wall_s']:.1f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
