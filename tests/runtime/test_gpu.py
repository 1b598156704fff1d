"""The GPU path on one CUDA device: DeepSpeed's CUDA engines (FusedAdam built by nvcc), bf16 and fp16
with loss scaling, a bf16 G beside a fp32 D, nccl, and G_ema, samples and evaluation on the GPU; StyleGAN2's
double backwards (lazy R1, path length) under each precision and through checkpointed synthesis blocks;
super-resolution degrading its batches on the GPU with the Real-ESRGAN pipeline; and a served generator's batch
computed on the GPU.

CI has no GPU, so these are skipped there (with the reason); run them on a GPU machine with
``pytest tests/runtime/test_gpu.py``. Each case runs the training loop in a fresh process, because the test
session's own process group is gloo on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from local_runs import SR_BASE, SR_GAN
from tiny_run import OVERRIDES, STYLEGAN2

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch
    from distgan.core.loopback_group import init_local_group
    torch.cuda.set_device(0)
    init_local_group("nccl")  # store and NCCL's sockets on 127.0.0.1 only
    from distgan import load_config
    from distgan.persist.export import generate, load_generator
    from distgan.runtime.loop import RunInfo
    from distgan.tasks import build_trainer
    from sessions import LocalSession

    cfg = load_config(None, tuple(json.loads(sys.argv[2])))
    run = Path(sys.argv[1])
    run.mkdir()
    session = LocalSession(run / "store", device=torch.device("cuda"))
    trainer = build_trainer(cfg, RunInfo(run, "gpu", "gpu"), session)
    trainer.run()
    result = {
        "reports": session.reports,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
        "ema_device": str(next(trainer.ema.module.parameters()).device) if trainer.ema else None,
        "optimizer": type(trainer.engine_g.basic_optimizer).__name__,  # the torch optimizer inside DeepSpeed's
    }
    for net, engine in (("g", trainer.engine_g), ("d", trainer.engine_d)):
        param = next(engine.module.parameters())
        result[f"{net}_device"], result[f"{net}_dtype"] = str(param.device), str(param.dtype)
    if trainer.task.name == "generation":  # a generator of noise: the exported file samples on its own
        g, _ = load_generator(run)
        result["export_finite"] = bool(torch.isfinite(generate(g, 8, seed=0)).all())
    print("RESULT " + json.dumps(result))
""")

DTYPE_NAMES = {"bf16": "torch.bfloat16", "fp16": "torch.float16", "fp32": "torch.float32"}


def train_on_gpu(tmp_path: Path, overrides: tuple[str, ...]) -> dict:
    """Train one run in a fresh process on CUDA device 0; what ``SCRIPT`` prints of it."""
    tests_dir = Path(__file__).resolve().parents[1]  # the helper modules (sessions.py)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run"), json.dumps(overrides)],
                          capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def assert_trained_on_the_gpu(out: dict, g_precision: str, d_precision: str, steps: int) -> dict:
    """Both engines on CUDA in their own dtype, every logged loss finite; the last report."""
    assert out["g_device"].startswith("cuda") and out["d_device"].startswith("cuda")
    assert out["g_dtype"] == DTYPE_NAMES[g_precision] and out["d_dtype"] == DTYPE_NAMES[d_precision]
    assert out["optimizer"] == "FusedAdam", "on CUDA the engines take DeepSpeed's fused Adam, not torch's"
    losses = [r[k] for r in out["reports"] for k in ("loss_d", "loss_g") if k in r]
    assert losses and all(math.isfinite(v) for v in losses)
    last = out["reports"][-1]
    assert last["step"] == steps and last["skipped_g"] < steps and last["skipped_d"] < steps
    return last


def assert_loss_scales(reports: list[dict], nets: tuple[str, ...]) -> None:
    """fp16 engines log their dynamic loss scale: a power of two from 2**16 down, halved at most once per
    skipped (overflowed) step. Engines in another precision log none."""
    for net in ("g", "d"):
        logged = [(r[f"loss_scale_{net}"], r[f"skipped_{net}"]) for r in reports if f"loss_scale_{net}" in r]
        if net not in nets:
            assert not logged, net
            continue
        assert logged and len(logged) == len([r for r in reports if f"skipped_{net}" in r]), net
        for scale, skipped in logged:
            halvings = math.log2(2**16 / scale)
            assert 1 <= scale <= 2**16 and halvings == int(halvings) and halvings <= skipped, (net, scale, skipped)


@pytest.mark.parametrize("precision,stage", [("bf16", 2), ("fp16", 0), ("fp32", 3)])
def test_training_and_evaluation_on_one_gpu(precision, stage, tmp_path):
    out = train_on_gpu(tmp_path, OVERRIDES + (
        "train.steps=20", "scaling.num_workers=1", "tracking.wandb=false", "scaling.use_gpu=true",
        f"deepspeed.precision={precision}", f"deepspeed.zero_stage={stage}"))
    last = assert_trained_on_the_gpu(out, precision, precision, 20)
    assert out["ema_device"].startswith("cuda")
    assert math.isfinite(last["fid"]) and last["fid"] > 0
    assert out["export_finite"]
    assert_loss_scales(out["reports"], ("g", "d") if precision == "fp16" else ())
    print(precision, stage, out["optimizer"], {k: last[k] for k in ("fid", "kid", "precision", "recall")})


@pytest.mark.parametrize("g,d,stage,checkpointing", [
    ("bf16", "bf16", 2, True),   # R1 and path length through recomputed synthesis blocks
    ("fp16", "fp16", 0, False),  # both double backwards under dynamic loss scaling
    ("bf16", "fp32", 1, False),  # the common mix: D's penalty in fp32 beside a bf16 G
], ids=["bf16-zero2-checkpointing", "fp16-zero0", "bf16-g-fp32-d"])
def test_stylegan2_trains_with_its_regularizers_on_one_gpu(g, d, stage, checkpointing, tmp_path):
    steps = 12
    out = train_on_gpu(tmp_path, OVERRIDES + STYLEGAN2 + (
        f"train.steps={steps}", "data.resolution=32", "scaling.num_workers=1", "tracking.wandb=false",
        "scaling.use_gpu=true", f"deepspeed.g.precision={g}", f"deepspeed.d.precision={d}",
        f"deepspeed.zero_stage={stage}", f"model.checkpointing={str(checkpointing).lower()}", "eval.every=12"))
    last = assert_trained_on_the_gpu(out, g, d, steps)
    # Both lazy regularizers ran (every 2nd step) and gave finite penalties; ADA moved p from where it began.
    for key in ("reg_d", "reg_g", "pl_mean"):
        values = [r[key] for r in out["reports"] if key in r]
        assert values and all(math.isfinite(v) for v in values), key
    assert 0.0 <= last["ada_p"] <= 1.0 and last["ada_p"] != 0.2
    assert math.isfinite(last["fid"]) and out["export_finite"]
    assert_loss_scales(out["reports"], tuple(net for net, p in (("g", g), ("d", d)) if p == "fp16"))
    print(g, d, stage, checkpointing, f"peak {out['peak_gib']:.2f} GiB",
          {k: last[k] for k in ("loss_g", "loss_d", "reg_d", "reg_g", "ada_p", "fid")})


def test_super_resolution_degrades_on_the_gpu_with_a_bf16_g_and_a_fp32_d(tmp_path):
    """The Real-ESRGAN pipeline on the trainer's device (the GPU), per batch, as the published pipeline runs."""
    out = train_on_gpu(tmp_path, SR_BASE + SR_GAN + (
        "train.steps=6", "train.log_every=2", "eval.every=6", "scaling.use_gpu=true",
        "data.degradation.type=realesrgan", "data.degradation.device=trainer",
        "data.degradation.realesrgan.sharpen_gt=true", "deepspeed.g.precision=bf16", "deepspeed.d.precision=fp32"))
    last = assert_trained_on_the_gpu(out, "bf16", "fp32", 6)
    assert math.isfinite(last["psnr"]) and 0 < last["psnr"] < 100 and 0 < last["ssim"] <= 1
    assert_loss_scales(out["reports"], ())
    print({k: last[k] for k in ("loss_g", "loss_d", "psnr", "ssim")})


def test_the_realesrgan_pipeline_degrades_a_batch_on_the_gpu_as_on_the_cpu():
    """Same crops, same draws: the GPU's LR images are the CPU's, up to float rounding before each 8-bit step
    (the JPEG rounds trips run on the CPU either way, so a pixel on a rounding tie can land one level off)."""
    from distgan.config import DataConfig, DegradationConfig
    from distgan.config.data_schema import RealESRGANConfig
    from distgan.data.degradations import degrade_batch, draw
    from distgan.tasks.super_resolution.batches import SRBatches, sample_generator
    from distgan.tasks.super_resolution.data import load_sr

    deg = DegradationConfig(type="realesrgan", realesrgan=RealESRGANConfig(sharpen_gt=True))
    cfg = DataConfig(name="photos", channels=3, resolution=128, val_crop=128, degradation=deg)
    hr = SRBatches(load_sr(cfg, 4), cfg, 4, 16, 0, 1, seed=0).next_batch().real
    draws = [draw(tuple(hr.shape[1:]), 4, deg, sample_generator(0, 0, i)) for i in range(len(hr))]
    lr_cpu, target_cpu = degrade_batch(hr, 4, deg, draws)
    lr_gpu, target_gpu = degrade_batch(hr.cuda(), 4, deg, draws)
    assert lr_gpu.is_cuda and lr_gpu.shape == lr_cpu.shape == (16, 3, 32, 32)
    level = 2 / 255  # one 8-bit step in [-1, 1]
    lr_diff = (lr_gpu.cpu() - lr_cpu).abs()
    assert lr_diff.mean() < level / 4 and (lr_diff <= level + 1e-6).float().mean() > 0.99, lr_diff.max()
    assert (target_gpu.cpu() - target_cpu).abs().max() < 1e-3
    print(f"LR |GPU - CPU|: mean {lr_diff.mean():.2e}, max {lr_diff.max():.3f}, "
          f"{(lr_diff > 1e-6).float().mean():.2%} of pixels differ")


@pytest.mark.parametrize("family, conditional", [("dcgan", True), ("stylegan2", True)])
def test_a_served_generator_on_the_gpu_answers_what_the_cpu_does(tmp_path, family, conditional):
    """A Ray Serve replica with a GPU holds G there: a batch of draws (latents from each seed, labels, psi) is
    computed on the GPU and equals the CPU's samples up to float rounding."""
    from distgan.persist.export import load_generator
    from distgan.serving import ServedGenerator
    from distgan.tasks.generation.sampling import Draw, generate_many
    from tiny_generators import save_tiny

    source = save_tiny(tmp_path / "g", family, conditional)
    cpu, meta = load_generator(source)
    gpu = ServedGenerator(load_generator(source)[0], meta, device="cuda")
    labels = torch.tensor([0, 1, 2])
    draws = [Draw(3, 7, labels, 0.7 if family == "stylegan2" else None), Draw(3, 9, labels.flip(0), None)]
    on_gpu = generate_many(gpu.module, [Draw(d.n, d.seed, d.labels.cuda(), d.truncation) for d in draws])
    on_cpu = generate_many(cpu, draws)
    assert all(g.is_cuda for g in on_gpu)
    assert all(torch.allclose(g.float().cpu(), c, atol=1e-4) for g, c in zip(on_gpu, on_cpu))
