"""``train.channels_last``: NHWC batches and conv weights train the same model as NCHW, to float rounding.

Same seed, same data: two in-process runs differ only in layout, so their parameters agree to summation-order
differences. The weights stay NHWC through DeepSpeed's steps (ZeRO-0, fp32 and bf16; ZeRO 1-3, whose flat buffers cannot
be NHWC, are refused). A checkpoint is layout-free: it resumes into a run without the option (which may
change on resume).
"""

from __future__ import annotations

import pytest
import torch

from distgan.config import ConfigError
from distgan import load_config
from local_runs import LAYOUT_TOLERANCE, SR_BASE, make_trainer, max_difference, params, small_config, train_sr


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_channels_last_trains_the_same_dcgan(process_group, tmp_path, precision):
    base = small_config(0, steps=3)
    nhwc = small_config(0, steps=3)
    base.deepspeed.precision = nhwc.deepspeed.precision = precision
    nhwc.train.channels_last = True
    a, _ = make_trainer(base, tmp_path, "nchw")
    a.run()
    b, session = make_trainer(nhwc, tmp_path, "nhwc")
    real, _ = b.gan.real_batch(b.task.next_batch)
    assert real.dim() == 4 and real.is_contiguous(memory_format=torch.channels_last)  # (1 channel: both are)
    b.run()
    # bf16 weights of ~1e-2 carry steps of ~1e-4: rounding differences are a few of those.
    tolerance = LAYOUT_TOLERANCE if precision == "fp32" else 4e-3
    assert max_difference(params(a.engine_g), params(b.engine_g)) < tolerance
    assert max_difference(params(a.engine_d), params(b.engine_d)) < tolerance
    assert max_difference(params(a.engine_g), params(b.engine_g)) > 0, "bit-identical: the option changed nothing"
    other_seed = small_config(0, steps=3)
    other_seed.train.seed, other_seed.deepspeed.precision = 1, precision
    c, _ = make_trainer(other_seed, tmp_path, "other-seed")
    c.run()  # the scale of a real difference, for comparison
    assert max_difference(params(a.engine_g), params(c.engine_g)) > 10 * tolerance
    convs = [p for p in b.engine_g.module.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert any(not p.is_contiguous() for p in convs)  # NHWC for real, not a layout both formats share

    resumed, _ = make_trainer(base, tmp_path, "resumed", resume_from=session.checkpoints[-1])
    resumed.restore()
    assert all(torch.equal(x, y) for x, y in zip(params(resumed.engine_g), params(b.engine_g)))


def test_channels_last_trains_the_same_srresnet(process_group, tmp_path):
    _, nchw = train_sr(tmp_path / "nchw", "train.steps=2", "loss.adversarial_weight=0", "eval.every=0")
    _, nhwc = train_sr(tmp_path / "nhwc", "train.steps=2", "loss.adversarial_weight=0", "eval.every=0",
                       "train.channels_last=true")
    difference = max_difference([p.detach() for p in nchw.engine_g.module.parameters()],
                                [p.detach() for p in nhwc.engine_g.module.parameters()])
    assert 0 < difference < LAYOUT_TOLERANCE
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
               and not p.is_contiguous() for p in nhwc.engine_g.module.parameters())


def test_the_mlp_family_and_partitioned_zero_are_refused():
    with pytest.raises(ConfigError, match="train.channels_last: the mlp family has no images"):
        load_config(None, ("model.family=mlp", "data.name=ring8", "train.channels_last=true"))
    with pytest.raises(ConfigError, match=r"train.channels_last: needs ZeRO-0 for G and D \(got stages 0 and 2\)"):
        load_config(None, ("train.channels_last=true", "deepspeed.d.zero_stage=2"))
    assert load_config(None, SR_BASE + ("train.channels_last=true",)).train.channels_last
