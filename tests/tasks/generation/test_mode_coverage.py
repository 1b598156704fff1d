"""``configs/vanilla_ring8.yaml`` does not collapse: a short real run covers the ring's modes.

The standard mode-collapse benchmark: a sample is near a mode when within 3
standard deviations of its centre. The run is the shipped config on one
in-process worker (the same per-worker batch; the Ray path is proven in
tests/e2e) for 1,500 of its 2,000 steps, about a minute on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

from distgan import load_config
from distgan.data.builtin import RING_STD, ring8_modes
from distgan.persist.export import generate, load_generator
from distgan.metrics.modes import mode_coverage
from distgan.runtime.loop import RunInfo
from distgan.tasks import build_trainer
from sessions import LocalSession

CONFIG = Path(__file__).resolve().parents[3] / "configs" / "vanilla_ring8.yaml"


def test_vanilla_ring8_covers_the_modes(process_group, tmp_path):
    cfg = load_config(CONFIG, ("train.steps=1500", "scaling.num_workers=1", "tracking.wandb=false",
                               "train.checkpoint_every=1500", "train.sample_every=1500"))
    run = tmp_path / "ring8"
    run.mkdir()
    build_trainer(cfg, RunInfo(run, "ring8", "ring8"), LocalSession(tmp_path / "store")).run()
    generator, _ = load_generator(run)
    result = mode_coverage(generate(generator, 2000, seed=0), ring8_modes(), RING_STD)
    assert result.modes_covered >= 7, result
    assert result.near_share > 0.5, result
