"""``distgan train`` refuses bad input before any Ray work starts, naming what is wrong."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from distgan.cli import main as cli_main
from distgan.launch import train as launch_train
from distgan.launch import tune as launch_tune


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the launcher gets as far as starting or joining Ray."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the input was validated")

    monkeypatch.setattr(launch_train, "ray_cluster", refuse)
    monkeypatch.setattr(launch_tune, "ray_cluster", refuse)


@pytest.fixture
def folders(tmp_path):
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.new("L", (20, 20)).save(broken / "fine.png")
    (broken / "bad.png").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("args, needles", [
    (["train.stepz=5"], ["train.stepz", "did you mean 'train.steps'"]),
    (["train.steps=abc"], ["train.steps", "integer", "'abc'"]),
    (["train.steps=0"], ["train.steps", "> 0"]),
    (["deepspeed.zero_stage=4"], ["deepspeed.zero_stage", "0, 1, 2 or 3"]),
    (["deepspeed.precision=fp8"], ["deepspeed.precision", "fp8"]),
    (["scaling.num_workers=-1"], ["scaling.num_workers"]),
    (["data.path={tmp}/missing"], ["data.path", "missing", "does not exist"]),
    (["data.path={tmp}/empty"], ["data.path", "empty", "no PNG/JPEG images"]),
    # Held in memory, a folder's files are checked before Ray starts (streamed, each when its turn comes).
    (["data.path={tmp}/broken", "data.stream=false"], ["bad.png", "data.skip_corrupt"]),
    (["{tmp}/absent.yaml"], ["absent.yaml", "does not exist"]),
    (["train.steps=5", "stray"], ["'stray'", "KEY=VALUE"]),
])
def test_bad_input_fails_before_ray_and_names_the_culprit(no_ray, folders, capsys, args, needles):
    storage = folders / "runs"
    argv = ["train", *(a.format(tmp=folders) for a in args), "--storage", str(storage)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("distgan: error: ")
    for needle in needles:
        assert needle.format(tmp=folders) in err, (needle, err)
    assert not storage.exists(), "a refused run must not create its run directory"


def test_skip_corrupt_gets_past_the_unreadable_image(no_ray, folders, capsys):
    """With data.skip_corrupt the same folder validates, so the launcher proceeds (to the Ray stand-in)."""
    argv = ["train", f"data.path={folders}/broken", "data.skip_corrupt=true", "data.resolution=16", "data.stream=false",
            "--storage", str(folders / "runs")]
    with pytest.raises(AssertionError, match="Ray was started"):
        cli_main(argv)


@pytest.mark.parametrize("args, needle", [
    (["--n", "4", "--out", "{tmp}/x.jpg"], "must end in .png"),
    (["--n", "0", "--out", "{tmp}/x.png"], "--n: must be > 0"),
    (["--zoom", "0", "--out", "{tmp}/x.png"], "--zoom: must be >= 1"),
])
def test_sample_refuses_bad_arguments(tmp_path, capsys, args, needle):
    assert cli_main(["sample", str(tmp_path), *(a.format(tmp=tmp_path) for a in args)]) == 2
    assert needle in capsys.readouterr().err


def test_sample_names_a_run_without_a_generator(tmp_path, capsys):
    assert cli_main(["sample", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "no generator.safetensors" in capsys.readouterr().err


def test_sample_labels_for_conditional_generators():
    from distgan.tasks.generation.sampling import parse_labels as sample_labels
    from distgan.config import ConfigError

    meta = {"class_names": ["zero", "one", "two"]}
    assert sample_labels(None, meta, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert sample_labels("all", meta, 6).tolist() == [0, 1, 2, 0, 1, 2]
    assert sample_labels("2, zero", meta, 4).tolist() == [2, 0, 2, 0]
    with pytest.raises(ConfigError, match=r"--labels: '3' is not a class of this generator.*0-2 or zero, one, two"):
        sample_labels("1,3", meta, 4)
    with pytest.raises(ConfigError, match="unconditional"):
        sample_labels("1", {"class_names": []}, 4)
    assert sample_labels(None, {}, 4) is None


@pytest.mark.parametrize("args, needle", [
    (["train.steps=5"], "tune.space: a sweep needs at least one key"),
    (["tune.space={optim.g.lrr: {loguniform: [1.0e-4, 1.0e-3]}}"], "did you mean 'optim.g.lr'"),
    (["--resume"], "--resume: name the sweep"),
    (["train.steps=5", "--resume", "--name", "s"], "--resume continues a sweep with the config it was started with"),
    (["--resume", "--name", "nothing"], "no sweep to resume"),
    (["tune.space={optim.g.lr: {choice: [1.0e-4]}}", "--name", "a/b"], "--name 'a/b': use a plain directory name"),
])
def test_tune_refuses_bad_input_before_ray(no_ray, tmp_path, capsys, args, needle):
    assert cli_main(["tune", *args, "--storage", str(tmp_path / "runs")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command, resume", [("train", False), ("tune", False), ("tune", True)])
def test_submitted_entrypoints_are_command_lines_distgan_accepts(command, resume):
    """What a job runs on the head parses with the same CLI, and a resumed sweep names no config."""
    import shlex

    from distgan.cli import build_parser
    from distgan.launch.submit import entrypoint

    argv = shlex.split(entrypoint(command, "my run", "/mnt/shared/runs dir", resume))
    assert argv[:3] == ["python", "-m", "distgan"]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.name, args.storage, args.address) == (command, "my run", "/mnt/shared/runs dir",
                                                                     "auto")
    assert args.items == ([] if resume else ["config.yaml"])
    assert getattr(args, "resume", False) == resume


def test_submit_needs_an_address_and_storage_before_anything_else(no_ray, capsys, monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("DISTGAN_STORAGE", raising=False)
    assert cli_main(["submit", "train.steps=5", "--address", "http://127.0.0.1:9"]) == 2
    assert "--storage" in capsys.readouterr().err
    assert cli_main(["submit", "train.steps=5", "--storage", "/tmp/x"]) == 2
    assert "--address" in capsys.readouterr().err
    assert cli_main(["submit", "train.steps=5", "--storage", "/tmp/x", "--address", "127.0.0.1:8265"]) == 2
    assert "http://HEAD:8265" in capsys.readouterr().err
    assert cli_main(["submit", "train.steps=5", "--storage", "runs", "--address", "http://127.0.0.1:9"]) == 2
    assert "--storage 'runs': give an absolute path on the cluster" in capsys.readouterr().err


SWEEP_CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "tune_dcgan_digits_asha.yaml")


@pytest.mark.parametrize("command", [["train", "train.steps=5"],
                                     ["submit", "train.steps=5", "--address", "http://127.0.0.1:9"],
                                     ["tune", SWEEP_CONFIG],
                                     ["submit", SWEEP_CONFIG, "--tune", "--address", "http://127.0.0.1:9"]],
                         ids=["train", "submit", "tune", "submit-tune"])
def test_a_run_under_a_bad_uri_is_refused_by_name_within_seconds(no_ray, tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    assert cli_main([*command, "--storage", "s3://KEY:SECRET@bucket/runs"]) == 2
    err = capsys.readouterr().err
    assert "credentials in the URI" in err and "SECRET" not in err
    if command[0] != "submit":  # submit leaves reaching the store to the cluster, which may see what we cannot
        # A store that does not answer, given on the command line (train) or in the config (tune): the error
        # names the key it came from.
        down = "s3://bucket/runs?endpoint_override=127.0.0.1:9&scheme=http"
        given = ["--storage", down] if command[0] == "train" else [f"train.storage={down}"]
        assert cli_main([*command, *given]) == 2
        key = "--storage" if command[0] == "train" else "train.storage"
        assert f"{key} {down!r} cannot be reached" in capsys.readouterr().err
    assert time.monotonic() - started < 30 and list(tmp_path.iterdir()) == []
