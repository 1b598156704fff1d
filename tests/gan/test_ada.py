"""Adaptive discriminator augmentation: each operation does what it says, p = 0 is the identity, gradients
pass, the controller follows ADA's rule with the same p on every rank, and p survives a checkpoint."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from distgan import load_config
from distgan.config import AdaConfig, ConfigError
from distgan.config.augment_schema import ADA_OPS
from distgan.gan import ada_ops
from distgan.gan.ada import AdaPipeline, AdaptiveAugment, build_d_augment
from distgan.tracking.jsonl import read_metrics
from engine_steps import build_gan, real_batches, tiny_config
from local_runs import make_trainer, small_config
from ports import free_port

ALL = ["blit", "geom", "color", "cutout"]


def images(n: int = 16, channels: int = 3, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# -- the pipeline ---------------------------------------------------------------------------


def test_p_zero_is_exactly_the_identity_and_p_one_changes_every_sample():
    x = images()
    torch.manual_seed(0)
    assert torch.equal(AdaPipeline(ALL)(x, 0.0), x)
    out = AdaPipeline(ALL)(x, 1.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert ((out - x).flatten(1).abs().amax(1) > 1e-3).all(), "p = 1 left a sample as it was"


def test_small_p_leaves_untouched_samples_bit_for_bit():
    x = images(64).to(torch.bfloat16)
    torch.manual_seed(1)
    out = AdaPipeline(ALL)(x, 0.02)  # about 1 - 0.98^13 = 23% of samples get any operation
    same = (out == x).flatten(1).all(1)
    assert out.dtype == torch.bfloat16 and 0 < same.sum() < 64


def test_xflip_is_torch_flip_and_twice_the_identity():
    x = images(32)
    torch.manual_seed(2)
    out = AdaPipeline(["xflip"])(x, 1.0)
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped | kept).all() and flipped.any() and kept.any()  # ADA flips half of the chosen samples
    mask = torch.tensor([True, False] * 16)
    assert torch.equal(ada_ops.flip_x(ada_ops.flip_x(x, mask), mask), x)


def test_quarter_turns_are_torch_rot90_for_the_drawn_turns():
    x = images(8)
    turns = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = ada_ops.rotate90(x, turns)
    for o, xi, k in zip(out, x, turns.tolist()):
        assert torch.equal(o, torch.rot90(xi, k, dims=(1, 2)))
    torch.manual_seed(3)
    drawn = AdaPipeline(["rotate90"])(images(64), 1.0)
    matches = [[torch.equal(o, torch.rot90(xi, k, dims=(1, 2))) for k in range(4)]
               for o, xi in zip(drawn, images(64))]
    assert all(any(m) for m in matches) and all(any(m[k] for m in matches) for k in range(4))
    wide = torch.rand(16, 1, 4, 6)
    turned = AdaPipeline(["rotate90"])(wide, 1.0)  # non-square: only half turns keep the shape
    assert all(torch.equal(o, w) or torch.equal(o, torch.rot90(w, 2, dims=(1, 2))) for o, w in zip(turned, wide))


def test_integer_translation_moves_content_by_whole_pixels_mirroring_the_border():
    x = images(2, size=6)
    out = ada_ops.translate_int(x, torch.tensor([2, -1]), torch.tensor([1, 0]))
    assert torch.equal(out[0, :, 1:, 2:], x[0, :, :-1, :-2])  # content moved 2 right, 1 down
    # What comes in is the image mirrored about its edge (the edge pixel repeated, as grid_sample reflects).
    assert torch.equal(out[0, :, 1:, 1], x[0, :, :-1, 0]) and torch.equal(out[0, :, 1:, 0], x[0, :, :-1, 1])
    assert torch.equal(out[1, :, :, :-1], x[1, :, :, 1:]) and torch.equal(out[1, :, :, -1], x[1, :, :, -1])
    # Through the pipeline: one lit pixel in the middle of a 16 px image moves by at most 0.125 x 16 = 2.
    lit = torch.zeros(64, 1, 16, 16)
    lit[:, :, 8, 8] = 1.0
    torch.manual_seed(4)
    moved = AdaPipeline(["xint"])(lit, 1.0)
    assert moved.sum(dim=(1, 2, 3)).eq(1).all() and set(moved.unique().tolist()) == {0.0, 1.0}
    where = moved[:, 0].flatten(1).argmax(1)
    dy, dx = where // 16 - 8, where % 16 - 8
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2 and (dy != 0).any() and (dx != 0).any()


def test_brightness_adds_one_constant_per_sample():
    x = images(16)
    torch.manual_seed(5)
    shift = AdaPipeline(["brightness"])(x, 1.0) - x
    per_sample = shift.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-6)
    assert per_sample[:, 0].std() > 0.05  # ADA's std 0.2


def test_saturation_zero_makes_grey_and_the_colour_matrix_acts_on_grey_images_too():
    x = images(4)
    grey = ada_ops.apply_color(x, ada_ops.saturation(torch.zeros(4)))
    assert torch.allclose(grey, x.mean(dim=1, keepdim=True).expand_as(x), atol=1e-6)
    assert torch.allclose(ada_ops.apply_color(x, ada_ops.saturation(torch.ones(4))), x, atol=1e-6)
    # A luma flip of a grey image negates it (ADA's handling of one channel: the RGB rows' mean).
    one = images(4, channels=1)
    assert torch.allclose(ada_ops.apply_color(one, ada_ops.luma_flip(torch.ones(4))), -one, atol=1e-6)


def test_hue_rotation_keeps_grey_and_turns_colour():
    x = images(2)
    turned = ada_ops.apply_color(x, ada_ops.hue_rotation(torch.full((2,), 2 * math.pi / 3)))
    # A third of a turn about the grey axis cycles the channels: R -> G -> B -> R.
    assert torch.allclose(turned, x[:, [2, 0, 1]], atol=1e-5)


def test_geometric_transforms_compose_into_one_resampling_and_cutout_zeroes_a_square():
    x = images(2, size=8)
    half_turn = ada_ops.rotate2d_inv(torch.full((2,), math.pi))
    assert torch.allclose(ada_ops.warp(x, half_turn), torch.rot90(x, 2, dims=(2, 3)), atol=1e-5)
    shift = ada_ops.translate2d_inv(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0]))
    assert torch.allclose(ada_ops.warp(x, shift)[..., 1:], x[..., :-1], atol=1e-5)
    cut = ada_ops.cutout(torch.ones(2, 1, 8, 8), torch.tensor([0.5, 0.0]), torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    assert cut[0].eq(0).sum() == 16 and torch.equal(cut[0, 0, 2:6, 2:6], torch.zeros(4, 4)) and cut[1].eq(1).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_gradients_reach_the_input_through_every_operation(channels):
    x = images(8, channels=channels).requires_grad_(True)
    weights = torch.rand(8, channels, 8, 8, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(7)
    (AdaPipeline(ALL)(x, 1.0) * weights).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad.flatten(1).abs().sum(1) > 0).all()
    for op in ADA_OPS:  # each operation alone too: none cuts the graph
        x.grad = None
        (AdaPipeline([op])(x, 1.0) * weights).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, op


# -- the controller -------------------------------------------------------------------------


def controller(p: float = 0.5, interval: int = 2, ada_kimg: float = 0.16, **kwargs) -> AdaptiveAugment:
    return AdaptiveAugment(AdaPipeline(["xflip"]), p=p, target=0.6, interval=interval, ada_kimg=ada_kimg, **kwargs)


def logits(positive: int, negative: int) -> torch.Tensor:
    return torch.cat([torch.full((positive,), 2.0), torch.full((negative,), -1.5)])


def d_steps(ada: AdaptiveAugment, batches) -> None:
    for batch in batches:
        ada.observe(batch)
        ada.end_d_step()


def test_p_moves_by_the_images_seen_over_ada_kimg_every_interval():
    ada = controller()
    d_steps(ada, [logits(8, 0)])
    assert ada.p == 0.5, "p is adjusted only every interval D steps"
    d_steps(ada, [logits(7, 1)])  # r_t = (8 + 6) / 16 = 0.875 > 0.6
    assert ada.last_rt == 0.875 and ada.p == pytest.approx(0.5 + 16 / 160)
    d_steps(ada, [logits(4, 4), logits(6, 2)])  # r_t = 0.25 < 0.6
    assert ada.p == pytest.approx(0.5)
    nan = torch.tensor([float("nan")] * 8)
    d_steps(ada, [nan, logits(8, 0)])  # a skipped step's NaN logits count for nothing
    assert ada.last_rt == 1.0 and ada.p == pytest.approx(0.5 + 8 / 160)


def test_p_stays_within_zero_and_one():
    low, high = controller(p=0.05), controller(p=0.95)
    d_steps(low, [logits(0, 8)] * 2)
    d_steps(high, [logits(8, 0)] * 2)
    assert low.p == 0.0 and high.p == 1.0
    fixed = controller(adaptive=False)
    d_steps(fixed, [logits(8, 0)] * 4)
    assert fixed.p == 0.5


def test_state_dict_round_trip_continues_the_interval_in_progress():
    ada, copy = controller(interval=3), controller(p=0.0, interval=3)
    d_steps(ada, [logits(8, 0), logits(8, 0)])  # two of three D steps of an interval
    state = json.loads(json.dumps(ada.state_dict()))  # as train_state.json carries it
    copy.load_state_dict(state)
    assert copy.p == 0.5 and copy.d_steps == 2
    d_steps(ada, [logits(0, 8)])
    d_steps(copy, [logits(0, 8)])  # r_t = 8 / 24 < 0.6 only with the 16 carried over: p falls
    assert copy.last_rt == ada.last_rt == pytest.approx(1 / 3) and copy.p == ada.p == pytest.approx(0.5 - 24 / 160)
    fixed = controller(p=0.2, adaptive=False)
    fixed.load_state_dict({"p": 0.9})
    assert fixed.p == 0.2, "a fixed p is the config's"


TWO_RANKS = """
import json, sys, torch
from distgan.core.loopback_group import init_local_group
from distgan.gan.ada import AdaPipeline, AdaptiveAugment
rank, port = int(sys.argv[1]), int(sys.argv[2])
init_local_group("gloo", rank, 2, port)
ada = AdaptiveAugment(AdaPipeline(["xflip"]), p=0.5, target=0.6, interval=2, ada_kimg=0.32)
# Rank 0 sees only positive logits (r_t 1 alone), rank 1 a quarter negative (r_t 0.5 alone: p would fall).
batch = torch.tensor([1.0] * 8) if rank == 0 else torch.tensor([1.0] * 6 + [-1.0] * 2)
for _ in range(2):
    ada.observe(batch)
    ada.end_d_step()
ada.observe(batch)
print("RESULT " + json.dumps({"p": ada.p, "rt": ada.last_rt, "state": ada.state_dict()}), flush=True)
# Left to interpreter exit, gloo's threads can abort the process ("terminate called without an active
# exception", exit -6): end the group first.
torch.distributed.destroy_process_group()
"""


def test_two_ranks_with_different_signs_get_the_same_p():
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", TWO_RANKS, str(rank), str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, err[-3000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    # Globally r_t = (16 + 8) / 32 = 0.75 > 0.6: p rises by 32 images / 320 on both ranks.
    assert results[0]["rt"] == results[1]["rt"] == 0.75
    assert results[0]["p"] == results[1]["p"] == pytest.approx(0.6)
    # The interval in progress is saved as global sums: the same on both ranks.
    assert results[0]["state"] == results[1]["state"] == {"p": results[0]["p"], "d_steps": 0, "signs": 12.0,
                                                          "count": 16.0}


# -- config and the generation step ------------------------------------------------------------------


@pytest.mark.parametrize("overrides, needle", [
    (["augment.ada.enabled=true", "augment.policy=color"], "augment.ada.enabled, augment.policy: set one"),
    (["augment.ada.pipeline=[blit,flip]"], "augment.ada.pipeline: unknown 'flip'"),
    (["augment.ada.enabled=true", "augment.ada.pipeline=[]"], "augment.ada.pipeline: empty"),
    (["augment.ada.target=1.0"], r"augment.ada.target: must be in \[0, 1\)"),
    (["augment.ada.p=1.5"], "augment.ada.p: a probability"),
    (["augment.ada.ada_kimg=0"], "augment.ada.ada_kimg: must be > 0"),
    (["augment.ada.interval=0"], "augment.ada.interval: must be >= 1"),
    (["augment.ada.scale_std=-1"], "augment.ada.scale_std: must be >= 0"),
    (["augment.ada.cutout_size=2"], "augment.ada.cutout_size: a fraction"),
    (["augment.ada.enabled=true", "data.name=ring8", "model.family=mlp"], "augment.ada.enabled: ADA transforms"),
])
def test_bad_ada_settings_are_refused_naming_their_keys(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(None, tuple(overrides))


def test_the_config_chooses_ada_or_diffaugment():
    assert isinstance(build_d_augment(load_config(None, ("augment.ada.enabled=true",)).augment), AdaptiveAugment)
    diff = build_d_augment(load_config(None, ("augment.policy=translation",)).augment)
    assert diff is not None and not isinstance(diff, AdaptiveAugment)
    assert build_d_augment(load_config(None, ()).augment) is None
    ada = AdaptiveAugment.from_config(AdaConfig(pipeline=["geom", "xflip"], p=0.25))
    assert ada.pipeline.ops == {"scale", "rotate", "aniso", "xfrac", "xflip"} and ada.p == 0.25


def test_a_generation_step_with_ada_moves_p_and_logs_it(process_group):
    cfg = tiny_config(0)
    cfg.loss.d_reg.type = "r1"  # R1's double backward through the pipeline too
    ada = cfg.augment.ada
    ada.enabled, ada.p, ada.interval, ada.ada_kimg = True, 0.5, 1, 0.08  # 8 reals per D step: p moves 0.1
    gan = build_gan(cfg)
    real = real_batches()
    for _ in range(2):
        before = gan.ada.p
        gan.step(real, 8)
        assert abs(gan.ada.p - before) == pytest.approx(0.1), "every D step moves p by 8 / 80"
    stats = dict(zip(gan.stat_names, gan.pop_stats().tolist()))
    assert "ada_p" in gan.stat_names and 0.3 <= stats["ada_p"] <= 0.7
    assert math.isfinite(stats["loss_g"]) and math.isfinite(stats["reg_d"])
    gan.ada.p = 0.7  # wherever the two steps took it, a value a fresh build does not start from
    restored = build_gan(cfg)
    restored.load_state_dict(json.loads(json.dumps(gan.state_dict())))  # as train_state.json carries it
    assert restored.ada.p == 0.7 and restored.state_dict() == gan.state_dict()


def test_the_loop_logs_p_and_a_resume_continues_it_exactly(process_group, tmp_path):
    def config(steps: int):
        cfg = small_config(0, steps=steps)
        cfg.train.log_every, cfg.train.sample_every, cfg.eval.every = 1, 100, 0
        ada = cfg.augment.ada
        # 16 reals per D step, 3 D steps per adjustment: p moves by 48 / 480 at steps 3 and 6.
        ada.enabled, ada.p, ada.interval, ada.ada_kimg = True, 0.5, 3, 0.48
        return cfg

    whole, _ = make_trainer(config(4), tmp_path, "whole")
    whole.run()
    logged = [r["ada_p"] for r in read_metrics(tmp_path / "whole" / "metrics.jsonl")]
    assert logged[:2] == [0.5, 0.5] and logged[2] == logged[3] == pytest.approx(whole.gan.ada.p)
    assert abs(whole.gan.ada.p - 0.5) == pytest.approx(0.1)

    first, session = make_trainer(config(2), tmp_path, "first")
    first.run()
    saved = json.loads((session.checkpoints[-1] / "train_state.json").read_text())["algorithm"]["ada"]
    assert saved["p"] == 0.5 and saved["d_steps"] == 2 and saved["count"] == 32  # mid-interval
    resumed, _ = make_trainer(config(4), tmp_path, "resumed", resume_from=session.checkpoints[-1])
    resumed.run()
    assert resumed.gan.ada.p == whole.gan.ada.p and resumed.gan.ada.last_rt == whole.gan.ada.last_rt
