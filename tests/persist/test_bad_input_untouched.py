"""Bad input against an existing run: ``distgan train`` refuses it with a message naming the problem, before
Ray starts, and leaves every byte and mtime of the run directory as it was (a refused resume must not even
rewrite config.yaml). Also what ``sample``/``evaluate``/``upscale`` say when handed another family's generator.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from distgan import models
from distgan.persist import rundir
from distgan.cli import main as cli_main
from distgan import load_config
from distgan.persist.export import save_generator
from distgan.launch import train as launch_train

RUN = ("train.steps=6", "train.checkpoint_every=3", "model.g_width=16", "model.d_width=16", "model.latent_dim=16",
       "data.resolution=16")
PAST = 1_000_000_000  # 2001: any rewrite, however quick, moves an mtime away from it


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the input was refused")

    monkeypatch.setattr(launch_train, "ray_cluster", refuse)


@pytest.fixture
def storage(tmp_path) -> Path:
    """runs/existing: a run as training leaves it (config, metrics, samples, W&B id, a checkpoint, an export)."""
    storage = tmp_path / "runs"
    run = rundir.prepare(storage, "existing", load_config(None, RUN)).path
    (run / "metrics.jsonl").write_text('{"step": 2, "loss_d": 1.3}\n{"step": 4, "loss_d": 1.2}\n')
    (run / "samples").mkdir()
    Image.new("L", (8, 8), 128).save(run / "samples" / "step_000003.png")
    ckpt = run / "checkpoint_000003"
    for sub in ("G", "D"):
        (ckpt / sub).mkdir(parents=True)
        (ckpt / sub / "mp_rank_00_model_states.pt").write_bytes(b"\x00" * 64)
    (ckpt / "train_state.json").write_text('{"step": 3}')
    for rank in (0, 1):
        (ckpt / f"manifest_rank{rank}.json").write_text("{}")
    (run / "generator.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    for path in [*run.rglob("*"), run]:
        os.utime(path, (PAST, PAST))
    return storage


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and every entry's mtime under ``root``."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>", p.stat().st_mtime_ns)
            for p in sorted([root, *root.rglob("*")])}


@pytest.fixture
def inputs(tmp_path) -> Path:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    Image.new("L", (20, 20)).save(tmp_path / "broken" / "fine.png")
    (tmp_path / "broken" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated")
    (tmp_path / "truncated").mkdir()
    Image.effect_noise((64, 64), 50).convert("L").save(tmp_path / "truncated" / "cut.jpg", quality=90)
    raw = (tmp_path / "truncated" / "cut.jpg").read_bytes()
    (tmp_path / "truncated" / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "malformed.yaml").write_text("train:\n  steps: [1, 2\n")
    (tmp_path / "tabs.yaml").write_text("train:\n\tsteps: 5\n")
    return tmp_path


@pytest.mark.parametrize("args, needles", [
    (["{inputs}/malformed.yaml"], ["malformed.yaml", "not valid YAML"]),
    (["{inputs}/tabs.yaml"], ["tabs.yaml", "not valid YAML"]),
    (["{inputs}/absent.yaml"], ["absent.yaml", "does not exist"]),
    ([*RUN, "train.stpes=5"], ["train.stpes", "did you mean 'train.steps'"]),
    ([*RUN, "optim.g.betas=[0.5, 0.9]", "optim.g.beta=[0.5, 0.9]"], ["optim.g.beta", "did you mean 'optim.g.betas'"]),
    ([*RUN, "trian.steps=5"], ["trian", "did you mean 'train'"]),
    ([*RUN, "train.steps=six"], ["train.steps", "expected an integer", "'six'"]),
    ([*RUN, "optim.g.lr=[0.1]"], ["optim.g.lr", "expected a number"]),
    ([*RUN, "optim.g.lr=.nan"], ["optim.g.lr", "finite"]),
    ([*RUN, "model.conditional=maybe"], ["model.conditional", "true or false"]),
    ([*RUN, "train.batch_size=0"], ["train.batch_size", "> 0", "got 0"]),
    ([*RUN, "model.g_width=-16"], ["model.g_width", "> 0"]),
    ([*RUN, "scaling.num_workers=0"], ["scaling.num_workers", "> 0"]),
    ([*RUN, "train.collective_timeout_s=0"], ["train.collective_timeout_s", "> 0"]),
    ([*RUN, "data.resolution=12"], ["data.resolution", "power of two", "12"]),
    ([*RUN, "data.path={inputs}/empty"], ["data.path", "empty", "no PNG/JPEG images"]),
    ([*RUN, "data.path={inputs}/broken", "data.stream=false"], ["bad.png", "data.skip_corrupt"]),
    ([*RUN, "data.path={inputs}/truncated", "data.stream=false"], ["cut.jpg", "truncated", "data.skip_corrupt"]),
    ([*RUN, "data.path={inputs}/missing"], ["data.path", "missing", "does not exist"]),
    ([*RUN, "data.path=''"], ["data.path", "empty"]),
    # Resuming with settings that shape the checkpoint: refused by the run directory, which is left as it was.
    ([*RUN, "model.family=mlp"], ["'existing'", "model.family: 'dcgan' -> 'mlp'", "pick a new --name"]),
    ([*RUN, "model.g_width=32"], ["model.g_width: 16 -> 32"]),
    ([*RUN, "data.name=ring8", "model.family=mlp"], ["data.name: 'digits' -> 'ring8'"]),
])
def test_bad_input_leaves_the_existing_run_untouched(no_ray, storage, inputs, capsys, args, needles):
    before = snapshot(storage)
    argv = ["train", *(a.format(inputs=inputs) for a in args), "--name", "existing", "--storage", str(storage)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("distgan: error: ") and "Traceback" not in err
    for needle in needles:
        assert needle.format(inputs=inputs) in err, (needle, err)
    assert snapshot(storage) == before


@pytest.mark.parametrize("name", ["a/b", "../escape", "existing/sub", ".hidden", "/abs"])
def test_run_names_with_path_separators_are_refused(no_ray, storage, capsys, name):
    before = snapshot(storage.parent)
    assert cli_main(["train", *RUN, "--name", name, "--storage", str(storage)]) == 2
    assert f"--name {name!r}: use a plain directory name" in capsys.readouterr().err
    assert snapshot(storage.parent) == before


def no_cluster(monkeypatch):
    """Stand-ins for a cluster without GPUs; the trainer is never built."""
    monkeypatch.setattr(launch_train, "ray_cluster", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(launch_train, "resolve_use_gpu", lambda cfg: False)
    # The real progress printer's queue is a Ray actor: it would start (and leave running) a Ray of its own.
    monkeypatch.setattr(launch_train, "ProgressPrinter", NoProgress)


class NoProgress(contextlib.nullcontext):
    callback = None

    def __init__(self, *args):
        super().__init__()


def test_a_good_resume_gets_past_the_checks(monkeypatch, storage):
    """The control: the run's own settings pass every check, the cluster's included, and reach the trainer,
    and config.yaml is rewritten on the way, which the snapshot sees: the refusals above and below are about
    the bad input, not a blind comparison."""
    no_cluster(monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("the trainer was built")

    monkeypatch.setattr(launch_train, "build_trainer", refuse)
    before = snapshot(storage)
    with pytest.raises(AssertionError, match="the trainer was built"):
        cli_main(["train", *RUN, "--name", "existing", "--storage", str(storage)])
    after = snapshot(storage)
    assert after["existing/config.yaml"][1] != before["existing/config.yaml"][1]
    # train.log: the driver's log of this command, which got as far as building the trainer.
    assert {k for k in after if after[k] != before.get(k)} == {"existing", "existing/config.yaml",
                                                                "existing/train.log"}


def test_a_resume_refused_for_want_of_gpus_leaves_config_yaml(monkeypatch, storage, capsys):
    """The checks that need the cluster come after Ray starts, and still before config.yaml is rewritten."""
    no_cluster(monkeypatch)
    before = snapshot(storage)
    assert cli_main(["train", *RUN, "deepspeed.precision=fp16", "--name", "existing", "--storage", str(storage)]) == 2
    assert "fp16 needs GPUs" in capsys.readouterr().err
    assert snapshot(storage) == before


# -- another family's generator handed to sample, evaluate, upscale -------------------------------------------


def export(directory: Path, *overrides: str, data_shape: tuple, **extra) -> Path:
    """A checkpoint-style export (generator.safetensors + generator.json) of a freshly built G."""
    cfg = load_config(None, overrides)
    g = models.build_generator(cfg.model, data_shape, 0)
    plain = cfg.to_dict()
    save_generator(directory, g, {"model": plain["model"], "data_config": plain["data"], "data_shape": list(data_shape),
                                  "num_classes": 0, "class_names": [], "ema": False, "step": 3, "images_seen": 96,
                                  **extra})
    return directory


@pytest.fixture
def dcgan_run(tmp_path) -> Path:
    run = tmp_path / "dcgan_run"
    export(run / "checkpoint_000003", *RUN, data_shape=(1, 16, 16))
    (run / "config.yaml").write_text(yaml.safe_dump(load_config(None, RUN).to_dict()))
    return run


@pytest.fixture
def mlp_checkpoint(tmp_path) -> Path:
    return export(tmp_path / "mlp_run" / "checkpoint_000003", "model.family=mlp", "data.name=ring8",
                  "model.g_width=8", "model.latent_dim=8", data_shape=(2,))


def test_evaluate_names_a_checkpoint_moved_into_another_familys_run(dcgan_run, mlp_checkpoint, capsys):
    """An mlp checkpoint copied into a dcgan run: evaluate reads the run's config.yaml and says they disagree."""
    shutil.copytree(mlp_checkpoint, dcgan_run / "checkpoint_000009")
    assert cli_main(["evaluate", str(dcgan_run / "checkpoint_000009"), "--n", "10"]) == 2
    err = capsys.readouterr().err
    assert "makes samples of shape (2,)" in err and "(1, 16, 16)" in err


def test_upscale_refuses_a_generation_checkpoint(mlp_checkpoint, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    assert cli_main(["upscale", str(mlp_checkpoint), str(tmp_path / "in.png")]) == 2
    err = capsys.readouterr().err
    assert "is not a super-resolution generator" in err and "'mlp'" in err


def test_sample_of_another_checkpoint_family_works_from_its_own_description(mlp_checkpoint, tmp_path):
    """A checkpoint carries its family in generator.json, so sampling it needs no config that could disagree."""
    assert cli_main(["sample", str(mlp_checkpoint), "--n", "5", "--out", str(tmp_path / "s.npz")]) == 0


def test_sample_refuses_a_super_resolution_checkpoint(tmp_path, capsys):
    sr = export(tmp_path / "sr" / "checkpoint_000003", "model.family=srresnet", "data.name=photos", "data.channels=3",
                "data.resolution=64", "loss.adversarial_weight=0", "model.blocks=1", "model.g_width=8",
                data_shape=(3, 64, 64), task="sr", scale=4)
    assert cli_main(["sample", str(sr), "--n", "4", "--out", str(tmp_path / "s.png")]) == 2
    assert f"{sr} is a super-resolution generator" in capsys.readouterr().err and not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_weights_of_another_family_beside_the_description_are_named(dcgan_run, mlp_checkpoint, tmp_path, capsys,
                                                                    command):
    target = dcgan_run / "checkpoint_000003" / "generator.safetensors"
    shutil.copy(mlp_checkpoint / "generator.safetensors", target)
    extra = ["--out", str(tmp_path / "s.png")] if command == "sample" else []
    assert cli_main([command, str(dcgan_run / "checkpoint_000003"), "--n", "4", *extra]) == 2
    err = capsys.readouterr().err
    assert f"{target} does not hold the weights generator.json describes (a 'dcgan' generator)" in err
    assert "missing" in err and "unexpected" in err


def test_fixture_weights_are_loadable():
    """The stand-in exports above are real generators (guards the refusals against failing for another reason)."""
    assert torch.is_tensor(next(models.build_generator(load_config(None, RUN).model, (1, 16, 16), 0).parameters()))


def test_the_configs_storage_is_used_unless_storage_is_given(monkeypatch, tmp_path, capsys):
    """``train.storage`` is where runs go without ``--storage``; ``--storage`` wins; a bad one is named by its key."""
    no_cluster(monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("the trainer was built")

    monkeypatch.setattr(launch_train, "build_trainer", refuse)
    monkeypatch.chdir(tmp_path)
    for extra, where in (([], tmp_path / "from-config"), (["--storage", str(tmp_path / "flag")], tmp_path / "flag")):
        with pytest.raises(AssertionError, match="the trainer was built"):
            cli_main(["train", *RUN, "train.storage=from-config", "--name", "r", *extra])
        assert (where / "r" / "config.yaml").is_file()
        # The recorded config names the storage absolutely: a worker elsewhere would not find a relative one.
        assert yaml.safe_load((where / "r" / "config.yaml").read_text())["train"]["storage"] == str(
            tmp_path / "from-config")
    assert not (tmp_path / "flag" / "from-config").exists()
    assert cli_main(["train", *RUN, "train.storage=s3://KEY:SECRET@bucket/runs", "--name", "r"]) == 2
    err = capsys.readouterr().err
    assert "train.storage " in err and "credentials in the URI" in err and "SECRET" not in err
