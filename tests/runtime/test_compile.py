"""``train.compile``: G and D compiled in place train the same model as eager, to float rounding, and their
checkpoints are the eager modules' (a compiled run resumes into an eager one); StyleGAN2 traces whole."""

from __future__ import annotations

import copy

import pytest
import torch

from distgan import load_config, models
from distgan.config import ConfigError, ModelConfig
from distgan.config.stylegan_schema import StyleGAN2Config
from local_runs import LAYOUT_TOLERANCE, make_trainer, max_difference, params, small_config


def compiled(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


@pytest.mark.parametrize("stage", [0, 2])
def test_compiled_steps_train_the_same_dcgan_and_checkpoint_alike(process_group, tmp_path, stage):
    eager_cfg, compiled_cfg = small_config(stage, steps=3), small_config(stage, steps=3)
    compiled_cfg.train.compile = True
    eager, _ = make_trainer(eager_cfg, tmp_path, "eager")
    eager.run()
    fast, session = make_trainer(compiled_cfg, tmp_path, "compiled")
    assert compiled(fast.engine_g.module) and compiled(fast.engine_d.module)
    assert not compiled(eager.engine_g.module)
    torch._dynamo.reset()  # a fresh count: the compiled forwards really run through DeepSpeed's engines
    counters = torch._dynamo.utils.counters
    counters.clear()
    fast.run()
    assert counters["stats"]["unique_graphs"] >= 2, dict(counters["stats"])
    # Inductor fuses and reorders float arithmetic: Adam's steps of ~lr agree to a few lr (as for channels_last).
    assert max_difference(params(eager.engine_g), params(fast.engine_g)) < LAYOUT_TOLERANCE
    assert max_difference(params(eager.engine_d), params(fast.engine_d)) < LAYOUT_TOLERANCE
    # The compiled module keeps the eager state-dict keys: its checkpoint resumes into an eager run exactly.
    assert not any("_orig_mod" in k for k in fast.engine_g.module.state_dict())
    resumed, _ = make_trainer(eager_cfg, tmp_path, "resumed", resume_from=session.checkpoints[-1])
    resumed.restore()
    assert all(torch.equal(x, y) for x, y in zip(params(resumed.engine_g), params(fast.engine_g)))


def test_d_stays_eager_under_a_gradient_penalty(process_group, tmp_path):
    cfg = small_config(0, steps=1)
    cfg.train.compile = True
    cfg.loss.d_reg.type = "r1"
    trainer, _ = make_trainer(cfg, tmp_path, "r1")
    assert compiled(trainer.engine_g.module) and not compiled(trainer.engine_d.module)
    trainer.run()  # the penalty's double backward runs through the eager D
    assert trainer.state.step == 1


def test_compile_is_refused_at_zero_3():
    with pytest.raises(ConfigError, match=r"train.compile: needs ZeRO 0-2 for G and D \(got stages 0 and 3\)"):
        load_config(None, ("train.compile=true", "deepspeed.d.zero_stage=3"))


def test_stylegan2_traces_whole_through_its_own_autograd_functions():
    """StyleGAN2's convolutions and resampling filters run through conv_gradfix's autograd Functions, which
    torch.compile must trace rather than break its graph on: G and D each compile to one graph with no break
    and give eager's outputs and parameter gradients. ``aot_eager`` stops short of Inductor's code generation,
    which the DCGAN test above covers; the regularizers' double backward stays eager (path length calls
    ``mapping`` and ``synthesis``, which ``Module.compile`` leaves alone; D stays eager under R1)."""
    cfg = ModelConfig(family="stylegan2", latent_dim=8,
                      stylegan2=StyleGAN2Config(w_dim=8, mapping_layers=2, channel_base=64, channel_max=8,
                                                noise_mode="const"))
    torch.manual_seed(0)
    nets = {"g": models.build_generator(cfg, (3, 16, 16)), "d": models.build_discriminator(cfg, (3, 16, 16))}
    inputs = {"g": torch.randn(4, 8), "d": torch.rand(4, 3, 16, 16) * 2 - 1}
    for name, eager in nets.items():
        fast = copy.deepcopy(eager)
        fast.compile(backend="aot_eager")
        torch._dynamo.reset()
        counters = torch._dynamo.utils.counters
        counters.clear()
        outputs = []
        for net in (eager, fast):
            out = net(inputs[name])
            out.square().mean().backward()
            outputs.append((out.detach(), [p.grad for p in net.parameters()]))
        assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"], (name, dict(counters))
        (want, want_grads), (got, got_grads) = outputs
        torch.testing.assert_close(got, want)
        for w, g in zip(want_grads, got_grads):
            torch.testing.assert_close(g, w)
