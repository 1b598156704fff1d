"""The Python API checks what it is handed on this machine, before Ray starts: a Config changed in Python after
loading, a plain dict, a sweep; and ``import distgan`` itself stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import distgan
from distgan.config import ConfigError


@pytest.fixture
def no_ray_start(monkeypatch):
    """Starting Ray fails the test: every refusal below must come before it."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", refuse)
    was_up = ray.is_initialized()  # the suite's shared Ray may be up already (tests/e2e)
    yield
    assert ray.is_initialized() == was_up


def test_a_config_changed_after_loading_is_checked_before_ray_starts(tmp_path, no_ray_start):
    cfg = distgan.load_config(None, ("train.steps=2",))
    cfg.model.family = "dcgn"  # a registry name: only the full check knows it
    with pytest.raises(ConfigError, match=r"model.family: unknown model family 'dcgn'.*did you mean 'dcgan'"):
        distgan.train(cfg, storage=tmp_path)
    cfg.model.family, cfg.train.steps = "dcgan", 0  # a range
    with pytest.raises(ConfigError, match=r"train.steps: must be > 0"):
        distgan.train(cfg, storage=tmp_path)
    cfg.train.steps = "2"  # a type
    with pytest.raises(ConfigError, match=r"train.steps: expected an integer, got '2'"):
        distgan.train(cfg, storage=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_dict_and_a_sweep_are_checked_in_full(tmp_path, no_ray_start):
    with pytest.raises(ConfigError, match=r"data.name: unknown data set 'digit'"):
        distgan.train({"data": {"name": "digit"}}, storage=tmp_path)
    sweep = distgan.load_config(None, ("tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}}",
                                       "train.checkpoint_every=500"))
    sweep.tune.metric = "loss_g"
    with pytest.raises(ConfigError, match=r"tune.metric: 'loss_g' is not an evaluation metric"):
        distgan.tune(sweep, storage=tmp_path)
    with pytest.raises(ConfigError, match=r"config: expected a Config, a dict, a YAML path or None, got int"):
        distgan.train(3, storage=tmp_path)
    assert not any(tmp_path.iterdir())


def test_importing_distgan_imports_neither_torch_nor_ray():
    code = "import sys, distgan; distgan.Config; print('torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
