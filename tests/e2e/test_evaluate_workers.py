"""Evaluation split across 2 Ray Train workers gives the value one process gives, for the same seed.

Each rank generates its contiguous share of the samples (501: the shares are
uneven) and rank 0 gathers the features; the scores must match a
single-process evaluation of the same generator, and every rank must return
them. Unconditional and conditional generators (whose class predictions ride
along in the gather) are both checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from distgan import models
from distgan import load_config
from distgan.data import load_dataset
from distgan.tasks.generation.evaluation import Evaluator
from distgan.persist.export import load_generator, save_generator

pytestmark = pytest.mark.ray

OVERRIDES = ("eval.n=501", "eval.kid_subsets=10", "eval.kid_subset_size=200", "model.g_width=16",
             "model.latent_dim=16")
CASES = {"plain": ("eval.metrics=fid,kid,pr",),
         "conditional": ("eval.metrics=fid,class_acc", "model.conditional=true")}


def evaluate_here(generator_dir: Path, case: str, rank: int = 0, world: int = 1, device=torch.device("cpu")):
    cfg = load_config(None, OVERRIDES + CASES[case])
    module, meta = load_generator(generator_dir)
    data = load_dataset(cfg.data)
    evaluator = Evaluator(cfg.eval, data.x, data.labels, data.kind, tuple(meta["class_names"]), rank, world, device)
    return evaluator.run(module.to(device))


def eval_fn(loop_config: dict) -> None:
    from distgan.launch.session import RaySession

    session = RaySession(use_gpu=False)
    out = {case: evaluate_here(Path(loop_config[case]), case, session.rank, session.world_size, session.device)
           for case in CASES}
    Path(loop_config["out"], f"rank{session.rank}.json").write_text(json.dumps(out))


def export(directory: Path, case: str) -> Path:
    cfg = load_config(None, OVERRIDES + CASES[case])
    torch.manual_seed(1)
    classes = 10 if cfg.model.conditional else 0
    g = models.build_generator(cfg.model, (1, 16, 16), classes)
    save_generator(directory, g.eval(), {"model": cfg.to_dict()["model"], "data_shape": [1, 16, 16],
                                         "num_classes": classes, "class_names": [str(d) for d in range(classes)]})
    return directory


def test_two_workers_give_the_single_process_scores(local_ray, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    dirs = {case: str(export(tmp_path / case, case)) for case in CASES}
    TorchTrainer(eval_fn, train_loop_config={**dirs, "out": str(tmp_path)},
                 scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
                 run_config=RunConfig(name="evaluate", storage_path=str(tmp_path / "ray"))).fit()
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for case in CASES:
        single = evaluate_here(Path(dirs[case]), case)
        two = ranks[0][case]
        for name in single:
            if name == "eval_seconds":
                continue
            # Equal up to float summation order: G and the feature net see other batch compositions.
            assert two[name] == pytest.approx(single[name], rel=1e-5, abs=1e-9), (case, name)
            assert ranks[1][case][name] == two[name], f"rank 1 returned other {case} scores than rank 0"
    assert set(ranks[0]["conditional"]) >= {"fid", "class_acc", "class_acc/0", "class_acc/9"}
