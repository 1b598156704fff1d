"""Super-resolution training in-process (one worker, real DeepSpeed engines, no Ray).

The PSNR stage beats bicubic on photos it never trained on; its generator
starts the GAN stage, refuses to start one of another scale or shape, and
serves ``distgan evaluate`` and ``distgan upscale``; an interrupted GAN-stage
run resumes bit-exactly.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from distgan.persist import rundir
from distgan.cli import main as cli_main
from distgan.config import ConfigError
from distgan import load_config
from distgan.persist.export import load_generator
from distgan.tracking.jsonl import read_metrics
from local_runs import SR_BASE as BASE, SR_GAN as GAN, sr_parameters as parameters, train_sr as train

@pytest.fixture(scope="module")
def psnr_run(process_group, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sr") / "psnr"
    train(run_dir, "train.steps=200", "train.checkpoint_every=100", "loss.adversarial_weight=0")
    return run_dir


def test_psnr_stage_beats_bicubic_on_held_out_photos(psnr_run):
    records = [r for r in read_metrics(psnr_run / "metrics.jsonl") if "psnr" in r]
    assert [r["step"] for r in records] == [50, 100, 150, 200]
    first, last = records[0], records[-1]
    assert last["psnr"] > last["psnr_bicubic"] + 0.1, records
    assert last["ssim"] > last["ssim_bicubic"]
    assert last["psnr"] > first["psnr"]
    assert all("loss_d" not in r and "grad_norm_d" not in r for r in read_metrics(psnr_run / "metrics.jsonl"))
    assert not (psnr_run / "checkpoint_000200" / "D").exists(), "the PSNR stage has no D to checkpoint"


def test_samples_are_bicubic_output_target_triplets(psnr_run):
    img = Image.open(psnr_run / "samples" / "step_000200.png")
    # Three columns of 64-px validation crops (x2 of 32-px LR) with 1-px padding, one row per image.
    assert img.size[0] == 3 * 64 + 4 and img.size[1] == 3 * 64 + 4 and img.mode == "RGB"


def test_export_describes_a_super_resolution_generator(psnr_run):
    g, meta = load_generator(psnr_run)
    assert meta["task"] == "super_resolution" and meta["scale"] == 2 and g.scale == 2
    lr = torch.rand(1, 3, 10, 14) * 2 - 1
    assert g(lr).shape == (1, 3, 20, 28)


def test_evaluate_reproduces_the_last_validation(psnr_run, capsys):
    assert cli_main(["evaluate", str(psnr_run), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    last = [r for r in read_metrics(psnr_run / "metrics.jsonl") if "psnr" in r][-1]
    assert scores["psnr"] == pytest.approx(last["psnr"], abs=1e-9)
    assert scores["psnr_bicubic"] == pytest.approx(last["psnr_bicubic"], abs=1e-9)


def test_upscale_cli_runs_the_trained_generator(psnr_run, tmp_path, capsys):
    rgb = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    assert cli_main(["upscale", str(psnr_run), str(tmp_path / "in.png"), "--out", str(tmp_path / "out.png"),
                     "--tile", "8", "--tile-overlap", "8"]) == 0
    assert Image.open(tmp_path / "out.png").size == (60, 40)
    assert cli_main(["upscale", str(psnr_run), str(tmp_path / "in.png"), "--scale", "4"]) == 2
    assert "differs from the generator's scale 2" in capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("model.scale=4", "upscales x2, but model.scale is 4"),
    ("model.blocks=2", "model.blocks 2 (the file has 1)"),
    ("model.family=rrdb", "is a 'srresnet' generator, but model.family is 'rrdb'"),
])
def test_init_from_refuses_another_generator_before_training(psnr_run, override, message):
    with pytest.raises(ConfigError, match=f"train.init_from: .*{re.escape(message)}"):
        load_config(None, BASE + GAN + (f"train.init_from={psnr_run}", override))


def test_init_from_a_missing_path_is_named(tmp_path):
    with pytest.raises(ConfigError, match="train.init_from: .*nowhere does not exist"):
        load_config(None, BASE + (f"train.init_from={tmp_path / 'nowhere'}",))


def test_a_resumed_psnr_run_cannot_grow_a_discriminator(psnr_run, tmp_path):
    shutil.copytree(psnr_run, tmp_path / "psnr")
    rundir.prepare(tmp_path, "psnr", load_config(None, BASE + ("loss.adversarial_weight=0",)))  # its config.yaml
    before = (tmp_path / "psnr" / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="loss.adversarial_weight: .*train.init_from="):
        rundir.prepare(tmp_path, "psnr", load_config(None, BASE + GAN))
    assert (tmp_path / "psnr" / "config.yaml").read_text() == before, "a refused resume rewrote the config"


def test_gan_stage_starts_from_the_psnr_generator_and_resumes_bit_exactly(psnr_run, tmp_path):
    stage = GAN + (f"train.init_from={psnr_run}", "train.steps=20", "train.checkpoint_every=10", "eval.every=10",
                   "train.sample_every=10")
    whole, whole_trainer = train(tmp_path / "whole", *stage)
    records = [r for r in read_metrics(tmp_path / "whole" / "metrics.jsonl") if "psnr" in r]
    psnr_end = [r for r in read_metrics(psnr_run / "metrics.jsonl") if "psnr" in r][-1]["psnr"]
    assert abs(records[0]["psnr"] - psnr_end) < 0.5, "the GAN stage did not start from the PSNR stage's G"
    # Interrupted after step 10: a new trainer from that checkpoint must land on the same weights.
    resumed, resumed_trainer = train(tmp_path / "resumed", *stage, resume_from=whole.checkpoints[0])
    assert resumed_trainer.task.data_state() == whole_trainer.task.data_state() == {"batch": 20}
    for a, b in zip(parameters(whole_trainer), parameters(resumed_trainer), strict=True):
        assert torch.equal(a, b)
    assert whole.reports[-1]["psnr"] == resumed.reports[-1]["psnr"]
