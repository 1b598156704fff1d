"""The evaluator in one process and ``distgan evaluate``: scores that respond to what is generated.

Generators that replay real digits (optionally of the wrong class) give known
answers; a randomly initialised DCGAN exercises the real export and CLI path.
The 1-vs-2-worker agreement on Ray is in tests/e2e/test_evaluate_workers.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from distgan import models
from distgan.cli import main as cli_main
from distgan.config import ConfigError
from distgan import load_config
from distgan.data import load_dataset
from distgan.evaluate import evaluate_generator
from distgan.tasks.generation.evaluation import Evaluator, shard
from distgan.persist.export import save_generator


class Replay(nn.Module):
    """Returns real digits picked by the latent; conditional replays show class ``(y + shift) % 10``."""

    latent_dim = 8

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, num_classes: int = 0, shift: int = 0, noise=0.0):
        super().__init__()
        self.x, self.labels, self.num_classes, self.shift, self.noise = x, labels, num_classes, shift, noise

    def forward(self, z: torch.Tensor, y=None) -> torch.Tensor:
        pick = (z[:, 0].abs() * 1e6).long()
        if y is None:
            out = self.x[pick % len(self.x)]
        else:
            out = torch.stack([self.x[(self.labels == (int(c) + self.shift) % 10).nonzero()[int(p) % 150, 0]]
                               for c, p in zip(y, pick)])
        return (out + self.noise * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


@pytest.fixture(scope="module")
def digits():
    return load_dataset(load_config(None).data)


def evaluator(digits, *overrides: str, conditional: bool = False) -> Evaluator:
    extra = ("model.conditional=true",) if conditional else ()
    cfg = load_config(None, ("eval.n=600", "eval.kid_subset_size=300", "eval.kid_subsets=20") + extra + overrides)
    names = tuple(str(d) for d in range(10)) if conditional else ()
    return Evaluator(cfg.eval, digits.x, digits.labels, digits.kind, names)


def test_real_digits_score_far_better_than_noisy_ones(digits):
    ev = evaluator(digits, "eval.metrics=fid,kid,pr")
    clean = ev.run(Replay(digits.x, digits.labels))
    noisy = ev.run(Replay(digits.x, digits.labels, noise=0.5))
    # 600 replayed reals still have FID > 0 (finite-sample bias), an order of magnitude under noisy ones.
    assert clean["fid"] < noisy["fid"] / 8, (clean, noisy)
    assert abs(clean["kid"]) < 3 * clean["kid_std"] + 1e-3 < noisy["kid"]
    assert clean["precision"] > 0.9 and clean["recall"] > 0.6
    assert noisy["precision"] < clean["precision"] - 0.1
    assert set(clean) == {"fid", "kid", "kid_std", "precision", "recall", "eval_seconds"}


def test_class_accuracy_sees_whether_the_requested_class_is_drawn(digits):
    ev = evaluator(digits, "eval.metrics=class_acc,fid", conditional=True)
    right = ev.run(Replay(digits.x, digits.labels, num_classes=10))
    wrong = ev.run(Replay(digits.x, digits.labels, num_classes=10, shift=1))
    assert right["class_acc"] > 0.95 and wrong["class_acc"] < 0.05
    per_class = [right[f"class_acc/{d}"] for d in range(10)]
    assert min(per_class) > 0.85, per_class
    # Shifted classes are still real digits: FID barely notices what class accuracy catches.
    assert wrong["fid"] < 2 * right["fid"] + 1.0


def test_evaluation_leaves_the_training_rng_alone(digits):
    before = torch.get_rng_state()
    evaluator(digits, "eval.metrics=fid").run(Replay(digits.x, digits.labels))
    assert torch.equal(before, torch.get_rng_state())


def tiny_stylegan2(noise_mode: str) -> nn.Module:
    cfg = load_config(None, ("model.family=stylegan2", "model.latent_dim=8", "model.stylegan2.w_dim=8",
                             "model.stylegan2.channel_base=64", "model.stylegan2.channel_max=8",
                             f"model.stylegan2.noise_mode={noise_mode}"))
    torch.manual_seed(0)
    g = models.build_generator(cfg.model, (1, 16, 16), 0).eval()
    with torch.no_grad():  # as trained: the noise strengths start at 0, where noise would change nothing
        for name, p in g.named_parameters():
            if name.endswith("strength"):
                p.fill_(0.5)
    return g


def test_a_generator_with_random_noise_scores_the_same_for_the_same_seed(digits):
    """A StyleGAN2's per-pixel noise (``noise_mode: random``) comes from the global generators: seeded from
    eval.seed, it gives one score per seed, and training's global stream is put back afterwards."""
    ev = evaluator(digits, "eval.metrics=fid,kid", "eval.n=200", "eval.kid_subset_size=100", "eval.batch_size=64")
    random_noise = tiny_stylegan2("random")
    before = torch.get_rng_state()
    first, again = ev.run(random_noise), ev.run(random_noise)
    assert torch.equal(before, torch.get_rng_state())
    assert (first["fid"], first["kid"]) == (again["fid"], again["kid"])
    other_seed = evaluator(digits, "eval.metrics=fid,kid", "eval.n=200", "eval.kid_subset_size=100",
                           "eval.batch_size=64", "eval.seed=1").run(random_noise)
    assert other_seed["fid"] != first["fid"]
    # The noise is still drawn, not frozen: the same weights with the saved constant noise score otherwise.
    const_noise = tiny_stylegan2("const")
    assert ev.run(const_noise)["fid"] != first["fid"]


def test_shards_cover_every_sample_once():
    for n, world in ((10, 3), (2000, 2), (7, 7), (5, 8)):
        spans = [shard(n, r, world) for r in range(world)]
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A randomly initialised DCGAN exported the way training exports it, without a config.yaml beside it."""
    cfg = load_config(None, ("model.g_width=16", "model.latent_dim=16"))
    torch.manual_seed(0)
    g = models.build_generator(cfg.model, (1, 16, 16), 0)
    directory = tmp_path_factory.mktemp("export")
    save_generator(directory, g.eval(), {"model": cfg.to_dict()["model"], "data_config": cfg.to_dict()["data"],
                                         "data_shape": [1, 16, 16], "num_classes": 0, "class_names": [],
                                         "step": 7})
    return directory / "generator.safetensors"


def test_cli_prints_a_table_and_json_with_the_same_scores(exported, capsys):
    assert cli_main(["evaluate", str(exported), "--metrics", "fid,kid", "--n", "300", "--json"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["step"] == 7 and record["n"] == 300 and record["features"] == "domain"
    assert record["fid"] > 0 and "kid" in record and "precision" not in record
    assert "use at least" not in err  # 300 samples of 128-d features: enough for FID
    assert "KID subsets of 1000 are capped at 300" in err  # said once, before any evaluation
    scores, _ = evaluate_generator(exported, ["eval.metrics=fid,kid", "eval.n=300"])
    assert scores["fid"] == pytest.approx(record["fid"], rel=1e-12)

    assert cli_main(["evaluate", str(exported), "--metrics", "fid", "--n", "300"]) == 0
    table = capsys.readouterr().out
    assert "step 7" in table and f"{record['fid']:.6g}" in table

    # Fewer samples than feature dimensions: it still answers, and says what to do.
    assert cli_main(["evaluate", str(exported), "--metrics", "fid", "--n", "100"]) == 0
    assert "use at least 128 samples" in capsys.readouterr().err


def test_cli_errors_name_the_problem(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISTGAN_INCEPTION_WEIGHTS", raising=False)
    assert cli_main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli_main(["evaluate", str(exported), "--features", "inception"]) == 2
    assert "DISTGAN_INCEPTION_WEIGHTS" in capsys.readouterr().err
    assert cli_main(["evaluate", str(exported), "--metrics", "fidd"]) == 2
    assert "did you mean 'fid'" in capsys.readouterr().err
    assert cli_main(["evaluate", str(exported), "--metrics", "class_acc"]) == 2
    assert "unconditional" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="shape"):
        evaluate_generator(exported, ["data.resolution=32"])
    # A key of training or the model would change nothing: refused, not silently ignored.
    assert cli_main(["evaluate", str(exported), "eval.n=64", "model.latent_dim=7"]) == 2
    assert "'model.latent_dim=7': evaluate takes eval.* and data.* overrides" in capsys.readouterr().err


def test_inception_weights_are_asked_for_only_by_a_run_that_evaluates(monkeypatch, tmp_path):
    from distgan.tasks.generation.task import check_config

    monkeypatch.delenv("DISTGAN_INCEPTION_WEIGHTS", raising=False)
    inception = ("eval.features=inception", f"eval.inception_weights={tmp_path / 'absent.pth'}")
    with pytest.raises(ConfigError, match=r"eval.inception_weights: Inception-v3 FID weights not found at .*absent"):
        check_config(load_config(None, (*inception, "eval.every=500")))
    check_config(load_config(None, (*inception, "eval.every=0")))  # never evaluates: nothing to load
