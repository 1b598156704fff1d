"""Precision per engine (``deepspeed.{g,d}.precision``): each engine's DeepSpeed JSON and dtypes its own, and the
tensors crossing between a bf16 network and a fp32 one cast to the receiver's dtype (in-process engines, CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from distgan import load_config
from distgan.checks import validate
from distgan.config import ConfigError
from distgan.runtime import engines
from distgan.tasks.super_resolution.step import STAT_NAMES as SR_STATS
from distgan.tracking.jsonl import read_metrics
from engine_steps import build_sr, pairs, sr_config
from local_runs import make_trainer, small_config


def dtypes(engine) -> set[torch.dtype]:
    return {p.dtype for p in engine.module.parameters()}


def test_each_engine_gets_the_deepspeed_json_of_its_own_precision():
    cfg = load_config(None, ("deepspeed.precision=bf16", "deepspeed.d.precision=fp32"))
    g, d = (engines.deepspeed_config(cfg, net, 2, False) for net in ("g", "d"))
    assert g["bf16"] == {"enabled": True} and g["data_types"] == {"buffer_dtype": "bf16"}
    assert d["bf16"] == {"enabled": False} and d["data_types"] == {}
    assert not g["fp16"]["enabled"] and not d["fp16"]["enabled"]
    assert (engines.compute_dtype(cfg, "g"), engines.compute_dtype(cfg, "d")) == (torch.bfloat16, torch.float32)
    # null inherits deepspeed.precision; an override may also go the other way.
    cfg = load_config(None, ("deepspeed.g.precision=bf16",))
    assert (engines.compute_dtype(cfg, "g"), engines.compute_dtype(cfg, "d")) == (torch.bfloat16, torch.float32)


@pytest.mark.parametrize("overrides,key", [
    (("deepspeed.d.precision=fp16",), "deepspeed.d.precision"),
    (("deepspeed.precision=fp16", "deepspeed.g.precision=bf16"), "deepspeed.precision"),  # D inherits fp16
])
def test_fp16_on_cpu_is_refused_naming_the_engines_key(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}: fp16 needs GPUs"):
        validate(load_config(None, (*overrides, "scaling.use_gpu=false")))


def test_a_bf16_g_beside_a_fp32_d_trains_in_the_loop(process_group, tmp_path):
    cfg = small_config(0, steps=3)
    cfg.train.log_every, cfg.train.sample_every, cfg.eval.every = 1, 100, 0
    cfg.deepspeed.precision, cfg.deepspeed.d.precision = "bf16", "fp32"
    cfg.loss.d_reg.type = "gp"  # its interpolates mix D's reals with G's fakes: both must be in D's dtype
    trainer, _ = make_trainer(cfg, tmp_path, "mixed")
    assert dtypes(trainer.engine_g) == {torch.bfloat16} and trainer.engine_g.bfloat16_enabled()
    assert dtypes(trainer.engine_d) == {torch.float32} and not trainer.engine_d.bfloat16_enabled()
    trainer.run()
    records = read_metrics(tmp_path / "mixed" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert all(math.isfinite(r[k]) for k in ("loss_d", "loss_g", "reg_d", "grad_norm_g", "grad_norm_d"))
    assert records[-1]["skipped_g"] == records[-1]["skipped_d"] == 0
    assert dtypes(trainer.engine_g) == {torch.bfloat16} and dtypes(trainer.engine_d) == {torch.float32}
    # Only fp16 has a loss scale to log (tests/runtime/test_gpu.py checks it where fp16 can run: on a GPU).
    assert engines.loss_scale(trainer.engine_g) is None and engines.loss_scale(trainer.engine_d) is None
    assert not any(key.startswith("loss_scale") for r in records for key in r)


@pytest.mark.parametrize("g,d", [("bf16", "fp32"), ("fp32", "bf16")])
def test_super_resolution_casts_what_crosses_to_the_receivers_dtype(process_group, g, d):
    cfg = sr_config(precision=g)
    cfg.deepspeed.d.precision = d
    gan = build_sr(cfg)
    assert dtypes(gan.engine_g) == {engines.DTYPES[g]} and dtypes(gan.engine_d) == {engines.DTYPES[d]}
    draw = pairs()
    gan.measure_grad_norms = True
    for _ in range(2):
        gan.step(draw)
    stats = dict(zip(SR_STATS, gan.pop_stats().tolist()))
    assert all(math.isfinite(stats[k]) for k in ("loss_g", "loss_pixel", "loss_g_adv", "loss_d"))
    assert all(0 < gan.grad_norms[n] < float("inf") for n in ("g", "d"))  # G's adversarial gradient came back
    assert gan.skipped_steps() == {"g": 0, "d": 0}
