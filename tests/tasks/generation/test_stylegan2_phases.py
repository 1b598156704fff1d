"""StyleGAN2's phases in the generation step: style mixing drawn from the rank's latent stream, the path-length
penalty against a hand-computed Jacobian, pl_mean's decay rule and its equality across ranks, the lazy Greg
schedule and its optimizer correction and its step under ZeRO-1/2, pl_mean in the algorithm's state, a run of
the shipped config with its path length turned on, both penalties in bf16 through ADA, and the refusals (ZeRO-3,
a G without a mapping network)."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distgan import load_config, models
from distgan.config import ConfigError
from distgan.gan.regularizers import path_length_noise, path_length_penalty, path_lengths, updated_pl_mean
from distgan.runtime import engines
from distgan.runtime.loop import RunInfo
from distgan.tasks import build_trainer
from distgan.tasks.generation.phases_stylegan import PathLengthRegularizer
from distgan.tasks.generation.step import AlternatingGAN
from distgan.tracking.jsonl import read_metrics
from sessions import LocalSession

SHAPE = (1, 16, 16)
TINY = ("model.family=stylegan2", "model.latent_dim=8", "model.stylegan2.w_dim=8", "model.stylegan2.mapping_layers=2",
        "model.stylegan2.channel_base=64", "model.stylegan2.channel_max=8", "model.stylegan2.noise_mode=const",
        "data.name=digits", "data.resolution=16", "train.batch_size=4", "tracking.wandb=false")
SHIPPED = Path(__file__).resolve().parents[3] / "configs" / "stylegan2_digits.yaml"


def config(*overrides: str):
    return load_config(None, TINY + overrides)


def build(cfg, z_seed: int = 1) -> AlternatingGAN:
    torch.manual_seed(0)
    eg = engines.build_engine(models.build_generator(cfg.model, SHAPE), cfg, "g", 1, False)
    ed = engines.build_engine(models.build_discriminator(cfg.model, SHAPE), cfg, "d", 1, False)
    return AlternatingGAN.from_config(cfg, eg, ed, torch.device("cpu"), torch.Generator().manual_seed(z_seed))


def reals():
    gen = torch.Generator().manual_seed(2)
    return lambda: (torch.rand(4, *SHAPE, generator=gen) * 2 - 1, None)


def tiny_generator():
    torch.manual_seed(0)
    return models.build_generator(config().model, SHAPE)


# -- style mixing ------------------------------------------------------------------------------------


def test_style_mixing_is_redrawn_exactly_from_the_latent_stream_and_changes_the_fakes(process_group):
    mixed = build(config("model.stylegan2.style_mixing_prob=1.0"))
    plain = build(config("model.stylegan2.style_mixing_prob=0.0"))
    assert mixed.mixing is not None and plain.mixing is None
    start = mixed.z_generator.get_state()
    a = mixed.fakes_without_graph(None, 4)
    after = mixed.z_generator.get_state()
    mixed.z_generator.set_state(start)
    assert torch.equal(mixed.fakes_without_graph(None, 4), a), "a restored stream must redraw the same mixing"
    assert torch.equal(mixed.z_generator.get_state(), after)
    plain.z_generator.set_state(start)
    b = plain.fakes_without_graph(None, 4)
    assert not torch.allclose(a, b), "at prob 1 every batch mixes: the fakes must differ from unmixed ones"
    # The same first latents: the difference is the second latent's styles from the crossover on.
    plain.z_generator.set_state(start)
    z = plain.latents(4)
    mixed.z_generator.set_state(start)
    assert torch.equal(mixed.latents(4), z)


def test_a_generator_without_mix_styles_is_not_mixed(process_group):
    from engine_steps import build_gan, tiny_config  # the DCGAN step of the other tests

    gan = build_gan(tiny_config(0))
    assert gan.mixing is None and gan.g_reg is None and "reg_g" not in gan.stat_names


# -- path length math --------------------------------------------------------------------------------


def test_path_length_matches_the_jacobian_computed_directly():
    g = tiny_generator()
    ws = g.mapping(torch.randn(2, 8)).detach().requires_grad_(True)
    images = g.synthesis(ws, "const")
    noise = path_length_noise(images, torch.Generator().manual_seed(3))
    assert noise.std().item() == pytest.approx(1 / 16, rel=0.2)  # N(0, 1) / sqrt(16 * 16)
    lengths = path_lengths(images, ws, noise)
    for i in range(2):
        # J [C, H, W, num_ws, w_dim] of one sample's image with respect to its own styles; J^T y by hand.
        jac = torch.autograd.functional.jacobian(lambda w: g.synthesis(w[None], "const")[0], ws[i].detach())
        jty = (jac * noise[i][..., None, None]).sum(dim=(0, 1, 2))
        expected = jty.square().sum(1).mean().sqrt()
        assert lengths[i].item() == pytest.approx(expected.item(), rel=1e-4)
    a = torch.tensor(0.5)
    assert path_length_penalty(lengths, a).item() == pytest.approx(((lengths - 0.5) ** 2).mean().item(), rel=1e-6)
    path_length_penalty(lengths, a).backward()  # the graph was kept: the penalty trains G
    weights = [p for name, p in g.synthesis.named_parameters() if name.endswith("conv.weight")]
    assert weights and all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


def test_pl_mean_follows_the_decay_rule_from_zero():
    reg = PathLengthRegularizer(2.0, 4, 0.1, 2, torch.device("cpu"))
    g = tiny_generator()
    seen = []
    for seed in range(3):
        before = float(reg.pl_mean)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(2, 8, generator=gen)
        reg.penalty(g, z, None, {}, torch.Generator().manual_seed(100 + seed))
        ws = g.mapping(z, update_w_avg=False)
        lengths = path_lengths(g.synthesis(ws, "const"), ws,
                               path_length_noise(torch.zeros(2, *SHAPE), torch.Generator().manual_seed(100 + seed)))
        seen.append(float(reg.pl_mean))
        assert seen[-1] == pytest.approx(before + 0.1 * (lengths.mean().item() - before), rel=1e-5)
    assert seen[0] > 0 and updated_pl_mean(torch.tensor(1.0), torch.tensor(3.0), 0.25).item() == 1.5


TWO_RANKS = """
import json, sys, torch
from distgan import load_config, models
from distgan.core.loopback_group import init_local_group
from distgan.tasks.generation.phases_stylegan import PathLengthRegularizer
rank, port, overrides = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
init_local_group("gloo", rank, 2, port)
torch.manual_seed(0)
g = models.build_generator(load_config(None, overrides).model, (1, 16, 16))
reg = PathLengthRegularizer(2.0, 4, 0.5, 2, torch.device("cpu"))
gen = torch.Generator().manual_seed(10 + rank)  # each rank its own latents: its own lengths
penalty = reg.penalty(g, torch.randn(3, 8, generator=gen) * (1 + 2 * rank), None, {}, gen)
print("RESULT " + json.dumps({"pl_mean": float(reg.pl_mean), "penalty": float(penalty)}))
# Both ranks done before either tears the group down: a gloo group left to the interpreter's exit can abort.
torch.distributed.barrier()
torch.distributed.destroy_process_group()
"""


def test_pl_mean_is_the_same_on_every_rank():
    with socket.socket() as s:  # a free port for the 2-process loopback group, as tests/gan/test_ada.py does
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-c", TWO_RANKS, str(rank), str(port), json.dumps(TINY)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, err[-3000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    assert results[0]["pl_mean"] == results[1]["pl_mean"] > 0
    assert results[0]["penalty"] != results[1]["penalty"], "the penalty itself is each rank's own batch"


# -- the Greg phase ------------------------------------------------------------------------------------


def test_greg_runs_every_interval_g_steps_with_the_lazy_correction(process_group):
    cfg = config("loss.g_reg.type=path_length", "loss.g_reg.interval=3", "optim.g.lr=0.001",
                 "optim.g.betas=[0.5, 0.99]")
    gan = build(cfg)
    assert gan.stat_names[-2:] == ("reg_g", "pl_mean")
    group = gan.engine_g.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.001 * 3 / 4)  # StyleGAN2 app. B: lr * k / (k + 1), beta ** (k / (k + 1))
    assert tuple(group["betas"]) == pytest.approx((0.5 ** 0.75, 0.99 ** 0.75))
    assert engines.lazy_ratio(cfg, "d") == 1.0 and engines.lazy_ratio(config(), "g") == 1.0
    ran = []
    for _ in range(6):
        before = gan.engine_g.global_steps
        gan.step(reals(), 4)
        stats = dict(zip(gan.stat_names, gan.pop_stats().tolist()))
        ran.append(gan.engine_g.global_steps - before == 2)
        assert ran[-1] == (not math.isnan(stats["reg_g"])), "reg_g is logged exactly when Greg runs"
        assert math.isfinite(stats["pl_mean"])
    assert ran == [False, False, True, False, False, True]
    assert float(gan.g_reg.pl_mean) > 0


def test_interval_one_joins_every_g_step(process_group):
    cfg = config("loss.g_reg.type=path_length", "loss.g_reg.interval=1")
    gan = build(cfg)
    assert engines.lazy_ratio(cfg, "g") == 1.0, "no extra G step: no correction"
    gan.step(reals(), 4)
    stats = dict(zip(gan.stat_names, gan.pop_stats().tolist()))
    assert gan.engine_g.global_steps == 1 and math.isfinite(stats["reg_g"])


@pytest.mark.parametrize("stage", [1, 2])
def test_greg_under_zero_takes_the_zero_0_step(process_group, stage):
    # ZeRO-2 reduces each gradient from a hook as autograd produces it: the output layers' biases, which the
    # path-length penalty reaches only through its double backward, must still get a defined gradient.
    # Interval 2: the penalty's own G step (Greg) at the second step, as lazy regularization runs it.
    overrides = ("loss.g_reg.type=path_length", "loss.g_reg.interval=2")
    plain, zero = build(config(*overrides)), build(config(*overrides, f"deepspeed.g.zero_stage={stage}"))
    for gan in (plain, zero):
        batches = reals()
        for _ in range(2):
            gan.step(batches, 4)
        assert math.isfinite(dict(zip(gan.stat_names, gan.pop_stats().tolist()))["reg_g"])
    for (name, a), b in zip(plain.engine_g.module.named_parameters(), zero.engine_g.module.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_pl_mean_survives_the_state_round_trip(process_group):
    cfg = config("loss.g_reg.type=path_length", "loss.g_reg.interval=1")
    gan = build(cfg)
    gan.step(reals(), 4)
    state = json.loads(json.dumps(gan.state_dict()))  # as train_state.json carries it
    assert state["g_reg"]["pl_mean"] == float(gan.g_reg.pl_mean) > 0
    restored = build(cfg)
    assert float(restored.g_reg.pl_mean) == 0.0
    restored.load_state_dict(state)
    assert torch.equal(restored.g_reg.pl_mean, gan.g_reg.pl_mean) and restored.state_dict() == gan.state_dict()


# -- refusals and a real run -----------------------------------------------------------------------------


def test_path_length_is_refused_for_a_generator_without_a_mapping_network(process_group):
    from engine_steps import build_gan, tiny_config

    cfg = tiny_config(0)
    cfg.loss.g_reg.type = "path_length"
    with pytest.raises(ConfigError, match=r"loss.g_reg.type: path_length .* no mapping and synthesis network"):
        build_gan(cfg)


@pytest.mark.parametrize("overrides, needle", [
    (("loss.g_reg.type=path_length", "deepspeed.g.zero_stage=3"), r"loss.g_reg.type: .*deepspeed.g.zero_stage"),
    (("loss.g_reg.interval=0",), r"loss.g_reg.interval: must be > 0"),
    (("loss.g_reg.decay=0",), r"loss.g_reg.decay: must be in \(0, 1\]"),
    (("loss.g_reg.batch_shrink=0",), r"loss.g_reg.batch_shrink"),
    (("loss.g_reg.type=jacobian",), r"loss.g_reg.type"),
])
def test_bad_g_reg_settings_are_refused_naming_their_keys(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        config(*overrides)


def test_the_shipped_config_logs_reg_g_and_pl_mean(process_group, tmp_path):
    cfg = load_config(SHIPPED, ("train.steps=2", "train.batch_size=4", "train.log_every=1", "train.sample_every=2",
                                "train.checkpoint_every=2", "eval.every=0", "tracking.wandb=false",
                                "scaling.num_workers=1", "loss.g_reg.interval=2", "model.stylegan2.channel_base=64",
                                "model.stylegan2.channel_max=8", "model.stylegan2.w_dim=8", "model.latent_dim=8",
                                # Off in the shipped config (ADA's CIFAR-10 settings), on as its comment says.
                                "loss.g_reg.type=path_length", "model.stylegan2.style_mixing_prob=0.9"))
    assert cfg.loss.g_reg.weight == 2.0 and cfg.loss.g_reg.batch_shrink == 2
    run = tmp_path / "sg2"
    run.mkdir()
    session = LocalSession(tmp_path / "store")
    trainer = build_trainer(cfg, RunInfo(run, "sg2", "sg2"), session)
    trainer.run()
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert "reg_g" not in records[0] and records[1]["reg_g"] > 0, "Greg runs at the 2nd step only"
    assert records[0]["pl_mean"] == 0 < records[1]["pl_mean"], "logged at every step, moved by the first Greg"
    saved = json.loads((session.checkpoints[-1] / "train_state.json").read_text())["algorithm"]
    assert saved["g_reg"]["pl_mean"] == pytest.approx(float(trainer.gan.g_reg.pl_mean))


@pytest.mark.parametrize("stage", [0, 2])
def test_both_lazy_regularizers_train_in_bf16_through_ada(process_group, stage):
    """The GPU tests' bf16 StyleGAN2 (R1 and the path-length penalty, each a double backward through
    conv_gradfix's convolutions and, for R1, ADA's resampling), here on the CPU's bf16 kernels: every
    derivative's dtype agrees with its input's and both penalties come out finite, under ZeRO-0 and ZeRO-2."""
    cfg = config("deepspeed.precision=bf16", f"deepspeed.zero_stage={stage}", "loss.d_reg.type=r1",
                 "loss.d_reg.interval=1", "loss.g_reg.type=path_length", "loss.g_reg.interval=1",
                 "augment.ada.enabled=true", "augment.ada.adaptive=false", "augment.ada.p=0.8")
    gan = build(cfg)
    assert next(gan.engine_g.module.parameters()).dtype == torch.bfloat16
    before = [p.detach().float().clone() for p in gan.engine_g.module.parameters()]
    batches = reals()
    for _ in range(2):
        gan.step(batches, 4)
    stats = dict(zip(gan.stat_names, gan.pop_stats().tolist()))
    assert math.isfinite(stats["reg_d"]) and stats["reg_d"] > 0
    assert math.isfinite(stats["reg_g"]) and stats["reg_g"] > 0
    after = [p.detach().float() for p in gan.engine_g.module.parameters()]
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), "G did not move"
