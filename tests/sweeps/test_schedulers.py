"""Scheduler entries: what Ray Tune would refuse once Ray is up is refused by ``check_sweep`` first, and PBT
mutates a choice only within its options. Ray Tune's schedulers are built in-process; no Ray cluster starts."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray.tune.schedulers.pbt import _explore
from ray.tune.search import SearchGenerator

from distgan import load_config
from distgan.config import ConfigError
from distgan.sweeps.checks import check_sweep
from distgan.sweeps.schedulers import SCHEDULERS
from distgan.sweeps.searchers import SEARCHERS
from distgan.sweeps.space import parse_space

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LR = "tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}}"
ASHA = str(CONFIGS / "tune_dcgan_digits_asha.yaml")


def build(cfg):
    return SCHEDULERS.get(cfg.tune.scheduler.type).build(cfg, parse_space(cfg.tune.space))


# -- ASHA: a first rung past the last step ------------------------------------------------------


@pytest.mark.parametrize("path,overrides,message", [
    # grace_period 0 defaults to eval.every (250 here) and train.steps is 100
    (None, ("tune.scheduler.type=asha", "eval.every=250", "train.checkpoint_every=250", "train.steps=100", LR),
     r"tune\.scheduler\.grace_period \(0, so eval\.every: 250\) must be at most train\.steps \(100\)"),
    (ASHA, ("train.steps=100",), r"tune\.scheduler\.grace_period \(250\) must be at most train\.steps \(100\)"),
    (ASHA, ("tune.scheduler.grace_period=100000",),
     r"tune\.scheduler\.grace_period \(100000\) must be at most train\.steps \(1500\)"),
    (str(CONFIGS / "tune_srgan_x4.yaml"), ("train.steps=100",), r"grace_period \(150\) must be at most train\.steps"),
], ids=["defaulted-from-eval-every", "asha-config-100-steps", "grace-period-100000", "srgan-config-100-steps"])
def test_asha_refuses_a_grace_period_past_the_last_step_before_ray(path, overrides, message):
    cfg = load_config(path, overrides)
    with pytest.raises(AssertionError, match="grace_period must be <= max_t"):
        build(cfg)  # what the sweep would meet with Ray up
    with pytest.raises(ConfigError, match=message):
        check_sweep(cfg)


def test_asha_accepts_a_grace_period_of_the_whole_run():
    cfg = check_sweep(load_config(ASHA, ("train.steps=250",)))  # one rung, at the last step
    assert build(cfg)._max_t == 250


# -- PBT: choices mutate within their options ---------------------------------------------------


def pbt_sweep(space: str):
    return check_sweep(load_config(None, ("tune.scheduler.type=pbt", "eval.every=100", "train.checkpoint_every=100",
                                          "train.steps=300", "optim.g.schedule.type=multistep",
                                          "optim.g.schedule.milestones=[100, 200]", space)))


def test_pbt_keeps_choices_among_their_options():
    """Ray's own explore step, on the scheduler distgan builds: numbers, strings and lists stay options."""
    options = {"loss.d_reg.interval": [1, 2, 4], "optim.g.lr": [1.0e-4, 2.0e-4], "optim.g.type": ["adam", "adamw"],
               "optim.g.schedule.milestones": [[100, 200], [150, 250]]}
    space = ", ".join(f"{k}: {{choice: {v}}}" for k, v in options.items())
    cfg = pbt_sweep(f"tune.space={{{space}, optim.d.lr: {{loguniform: [1.0e-4, 1.0e-3]}}, "
                    f"train.n_critic: {{randint: [1, 4]}}}}")
    options |= {"train.n_critic": [1, 2, 3]}  # a randint moves by one within [low, high)
    pbt = build(cfg)
    random.seed(0)
    for first in range(len(options["loss.d_reg.interval"])):
        config = {"space": {k: v[first % len(v)] for k, v in options.items()} | {"optim.d.lr": 3.0e-4}}
        for _ in range(50):
            # Without resampling Ray shifts a list's value to a neighbour but scales a domain's by 0.8 or 1.2.
            for resample in (0.0, pbt._resample_probability):
                new, _ = _explore(config, pbt._hyperparam_mutations, resample, pbt._perturbation_factors, None)
                for key, allowed in options.items():
                    assert new["space"][key] in allowed, (key, new["space"][key])
                config = new
    assert isinstance(config["space"]["optim.d.lr"], float)  # a range is still scaled or resampled


def test_pbt_refuses_a_search_algorithm_ray_would_refuse_with_ray_up():
    cfg = load_config(None, ("tune.scheduler.type=pbt", "tune.search=optuna", "eval.every=100",
                             "train.checkpoint_every=100", LR))
    pbt = build(cfg)
    pbt.set_search_properties("fid", "min")
    controller = SimpleNamespace(search_alg=SearchGenerator(SEARCHERS.get("optuna").build(cfg, 1)))
    with pytest.raises(ValueError, match="Search algorithms cannot be used"):
        pbt.on_trial_add(controller, trial=None)  # Tune adds the first trial after Ray has started
    with pytest.raises(ConfigError, match="tune.search: PBT draws and mutates the values itself, so it needs "
                                          "tune.search=random, got 'optuna'"):
        check_sweep(cfg)


# -- every scheduler: what its check accepts, Ray builds ------------------------------------------


@pytest.mark.parametrize("path,overrides", [
    (ASHA, ()), (ASHA, ("train.steps=250",)), (ASHA, ("tune.scheduler.grace_period=1500",)),
    (str(CONFIGS / "tune_dcgan_digits_pbt.yaml"), ()), (str(CONFIGS / "tune_srgan_x4.yaml"), ()),
    (str(CONFIGS / "tune_stylegan2_digits.yaml"), ()), (ASHA, ("tune.scheduler.type=fifo", "train.steps=100")),
    (ASHA, ("tune.scheduler.type=pbt", "tune.space={optim.g.type: {choice: [adam, adamw]}}")),
], ids=["asha", "asha-one-rung", "asha-grace-whole-run", "pbt", "srgan-asha", "stylegan2", "fifo-short", "pbt-choice"])
def test_a_checked_sweep_builds_its_scheduler(path, overrides):
    build(check_sweep(load_config(path, overrides)))


# -- a sweep without a space ------------------------------------------------------------------------


def test_check_sweep_refuses_an_empty_space():
    """``config show --tune`` and the dry runs call check_sweep; the real ``distgan tune`` refuses this."""
    with pytest.raises(ConfigError, match=r"tune\.space: a sweep needs at least one key to search"):
        check_sweep(load_config(str(CONFIGS / "dcgan_digits.yaml")))
