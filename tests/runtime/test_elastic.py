"""An elastic run's config at each width: keep_global keeps the global batch (and so every step's samples), keep_per_worker
scales the learning rates; both checked when the config loads."""

from __future__ import annotations

import math

import pytest

from distgan import load_config
from distgan.config import ConfigError
from distgan.data.sampler import ShardedBatches
from distgan.runtime.elastic import at_width
from distgan.sweeps.checks import check_sweep

ELASTIC = ("scaling.num_workers=[1,4]", "train.batch_size=6", "optim.g.lr=0.004", "optim.d.lr=0.002")


def test_a_fixed_width_run_trains_with_its_config_as_written():
    cfg = load_config(None, ("scaling.num_workers=2",))
    assert at_width(cfg, 2) is cfg and not cfg.scaling.is_elastic and cfg.scaling.max_workers == 2


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_keep_global_splits_the_full_width_global_batch_over_any_width(world):
    cfg = load_config(None, ELASTIC)
    at = at_width(cfg, world)
    assert at.train.batch_size * world == 6 * 4  # the global batch of the run at full width
    assert (at.optim.g.lr, at.optim.d.lr) == (0.004, 0.002)
    assert cfg.train.batch_size == 6  # the run's own config is left as written


def test_keep_global_deals_every_width_the_same_samples_per_step():
    """What the per-worker batch is for: the union of the ranks' shares of global batch k is the same set of
    samples at 4 workers and at 1 (distgan.data.sampler deals contiguous slices of one permutation)."""
    cfg = load_config(None, ELASTIC)

    def global_batch(world: int, k: int) -> list[int]:
        batch = at_width(cfg, world).train.batch_size
        out = []
        for rank in range(world):
            sampler = ShardedBatches(100, batch, rank, world, seed=3)
            for _ in range(k):
                sampler.next_indices()
            out += sampler.next_indices().tolist()
        return out

    for k in (0, 5):
        assert global_batch(4, k) == global_batch(1, k) == global_batch(2, k)


@pytest.mark.parametrize("rule, factor", [("linear", 0.5), ("sqrt", math.sqrt(0.5)), ("none", 1.0)])
def test_keep_per_worker_scales_the_learning_rates_by_the_stated_rule(rule, factor):
    cfg = load_config(None, ELASTIC + ("scaling.elastic.batch=keep_per_worker", f"scaling.elastic.lr_scaling={rule}"))
    at = at_width(cfg, 2)
    assert at.train.batch_size == 6
    assert at.optim.g.lr == pytest.approx(0.004 * factor) and at.optim.d.lr == pytest.approx(0.002 * factor)
    assert at_width(cfg, 4).optim.g.lr == pytest.approx(0.004)


@pytest.mark.parametrize("overrides, message", [
    (("scaling.num_workers=[2,2]",), r"scaling.num_workers: expected \[min, max\] with 1 <= min < max"),
    (("scaling.num_workers=[0,2]",), r"scaling.num_workers: expected \[min, max\] with 1 <= min < max"),
    (("scaling.num_workers=[2,3]", "train.batch_size=5"),
     r"scaling.elastic.batch: keep_global splits the global batch of 15 .* and 2 workers cannot share it evenly"),
    (("scaling.num_workers=[1,2,3]",), r"scaling.num_workers: .*expected a list of 2 values"),
    (("scaling.elastic.monitor_interval_s=0",), r"scaling.elastic.monitor_interval_s: must be > 0"),
])
def test_bad_elastic_settings_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_keep_per_worker_needs_no_even_split():
    cfg = load_config(None, ("scaling.num_workers=[2,3]", "train.batch_size=5", "scaling.elastic.batch=keep_per_worker"))
    assert cfg.scaling.min_workers == 2 and cfg.scaling.max_workers == 3


def test_a_sweep_refuses_an_elastic_width():
    cfg = load_config(None, ("scaling.num_workers=[1,2]", "eval.every=10", "train.checkpoint_every=10"))
    with pytest.raises(ConfigError, match=r"scaling.num_workers: \[1, 2\] is an elastic width"):
        check_sweep(cfg)
