"""The CLI answers help and config mistakes without importing torch or Ray, and ``--dry-run`` checks a run
as the real command does, printing its plan with Ray never started and nothing written.

Start-up time itself is too noisy to assert on a shared machine; what makes it fast is asserted instead:
which modules a command imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distgan.cli import main as cli_main
from distgan.config import Config

ROOT = Path(__file__).resolve().parent.parent
SWEEP_CONFIG = str(ROOT / "configs" / "tune_dcgan_digits_asha.yaml")
SECTIONS = [f.name for f in dataclasses.fields(Config)]


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``distgan ARGV`` in a fresh interpreter (``python -m distgan`` is the console script's entry)."""
    return subprocess.run([sys.executable, "-m", "distgan", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)})


def imports_after(code: str) -> str:
    """What ``code`` prints in a fresh interpreter; it reports whether torch and Ray got imported."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# -- start-up ----------------------------------------------------------------------------


def test_importing_the_cli_imports_neither_torch_nor_ray():
    out = imports_after("import distgan.cli; import sys; print('torch' in sys.modules, 'ray' in sys.modules)")
    assert out == "False False"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["tune", "--help"], ["submit", "--help"],
                                  ["train", "train.stepz=3"], ["train", "train.steps"], ["config", "keys"]],
                         ids=["help", "train-help", "tune-help", "submit-help", "misspelt", "bare", "keys"])
def test_help_and_config_mistakes_import_neither_torch_nor_ray(argv):
    code = ("import sys\nfrom distgan.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as exc:\n    rc = exc.code\n"
            "print(rc, 'torch' in sys.modules, 'ray' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stderr.strip().splitlines()[-1].split()[1:] == ["False", "False"], done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["tune", "--help"], ["submit", "--help"]])
def test_help_lists_the_config_sections_and_points_to_the_key_reference(argv):
    done = run_cli(*argv)
    assert done.returncode == 0, done.stderr
    for section in SECTIONS:
        assert re.search(rf"^  {section} +\S", done.stdout, re.M), f"section {section} missing from {argv}"
    assert "  deepspeed  ZeRO and precision for the G and D engines." in done.stdout  # its docstring
    assert "`distgan config keys`" in done.stdout and "docs/config.md" in done.stdout
    if argv[0] != "--help":
        assert "--dry-run" in done.stdout


@pytest.mark.parametrize("argv, named", [
    (["train", "train.steps"], "'train.steps': a bare key; give KEY=VALUE, e.g. train.steps=1500"),
    (["train", "deepspeed.g.zero_stage"], "'deepspeed.g.zero_stage': a bare key; give KEY=VALUE"),
    (["tune", SWEEP_CONFIG, "tune.num_samples"], "'tune.num_samples': a bare key"),
    (["train", "train.steps=3", "model.family"], "'model.family': a bare key"),
    (["train", "train.steps=3", "stray"], "'stray': a bare key; give KEY=VALUE, e.g. train.steps=200"),
])
def test_a_bare_key_is_named_as_one(argv, named):
    done = run_cli(*argv)
    assert done.returncode == 2
    assert named in done.stderr and "does not exist" not in done.stderr, done.stderr


def test_a_config_file_named_like_a_key_is_still_read(tmp_path):
    """Only a missing file that looks like ``section.key`` is taken for a bare key."""
    (tmp_path / "train.steps").write_text("train: {steps: 7}\n")
    done = run_cli("config", "show", "train.steps", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["train"]["steps"] == 7
    missing = run_cli("train", "train.yaml", cwd=tmp_path)  # a file name, however much it looks like a key
    assert missing.returncode == 2 and "config file 'train.yaml' does not exist" in missing.stderr


def test_a_config_file_out_of_place_is_named_as_one(tmp_path, capsys):
    ring = str(ROOT / "configs" / "vanilla_ring8.yaml")
    assert cli_main(["train", "--dry-run", "train.steps=10", ring]) == 2
    assert f"{ring!r}: the config file comes first, before any KEY=VALUE override" in capsys.readouterr().err
    assert cli_main(["train", ring, "--dry-run", ring]) == 2
    assert "one config file" in capsys.readouterr().err
    # A path may hold '=' (a sweep's trial directory, say); a key never holds '/'.
    (tmp_path / "lr=1e-3").mkdir()
    config = tmp_path / "lr=1e-3" / "best.yaml"
    config.write_text("train: {steps: 7}\nmodel: {family: mlp}\ndata: {name: ring8}\n")
    assert cli_main(["train", "--dry-run", str(config), "train.log_every=1", "--storage", str(tmp_path)]) == 0
    assert " 7 steps" in capsys.readouterr().out
    assert cli_main(["train", "--dry-run", str(tmp_path / "lr=1e-4" / "best.yaml")]) == 2
    assert "not a KEY=VALUE override (a key has no '/') and no such file" in capsys.readouterr().err


def test_a_misspelt_key_exits_2_naming_it_and_its_close_match():
    done = run_cli("train", "train.stepz=3")
    assert done.returncode == 2
    assert done.stderr.strip() == "distgan: error: unknown config key 'train.stepz'; did you mean 'train.steps'?"


def test_config_show_prints_the_resolved_config_checked_in_full(capsys):
    assert cli_main(["config", "show", SWEEP_CONFIG, "train.steps=300"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    base = yaml.safe_load(Path(SWEEP_CONFIG).read_text())
    base["train"]["steps"] = 300
    assert shown == Config.from_dict(base).to_dict()  # every key, the defaults filled in
    # The registries are consulted (not only keys and types), and --tune checks the sweep as tune does.
    assert cli_main(["config", "show", "model.family=dcgann"]) == 2
    assert "model.family" in capsys.readouterr().err
    assert cli_main(["config", "show", SWEEP_CONFIG, "tune.metric=loss_g"]) == 0  # train ignores the section
    capsys.readouterr()
    assert cli_main(["config", "show", SWEEP_CONFIG, "tune.metric=loss_g", "--tune"]) == 2
    assert "tune.metric: 'loss_g' is not an evaluation metric" in capsys.readouterr().err


# -- dry runs -------------------------------------------------------------------------------


@pytest.fixture
def dry(monkeypatch, tmp_path):
    """A working directory of its own, and a test that fails if anything starts or joins Ray."""
    import ray

    from distgan.launch import train as launch_train
    from distgan.launch import tune as launch_tune

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(launch_train, "ray_cluster", refuse)
    monkeypatch.setattr(launch_tune, "ray_cluster", refuse)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.chdir(tmp_path)
    # The suite's shared Ray may already be up (tests/e2e): what counts is that nothing here started one.
    was_up = ray.is_initialized()
    yield tmp_path
    assert ray.is_initialized() == was_up


def tree(root: Path) -> dict:
    """Every file under ``root`` with its bytes and modification time: what a dry run must leave as it was."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def row(out: str, label: str) -> str:
    found = re.search(rf"^  {re.escape(label)} +(.*)$", out, re.M)
    assert found, f"no {label!r} row in:\n{out}"
    return found.group(1)


def test_train_dry_run_prints_the_plan_of_a_fresh_run(dry, capsys):
    argv = ["train", "--dry-run", "scaling.num_workers=3", "deepspeed.g.zero_stage=2", "deepspeed.precision=bf16",
            "--storage", str(dry / "runs"), "--name", "r"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert row(out, "run") == "'r', fresh"
    assert row(out, "run dir") == str(dry / "runs" / "r")
    assert row(out, "storage") == f"{dry / 'runs'} (--storage)"
    assert row(out, "workers") == "3 (1 CPU each; GPUs if the cluster has them, 1 per worker)"
    assert row(out, "engines") == "G ZeRO-2, D ZeRO-0, bf16"
    assert row(out, "model") == "dcgan on digits; 1500 steps, checkpoint every 500, evaluation every 500"
    assert list(dry.iterdir()) == [], "a dry run wrote something"
    assert cli_main([*argv[:5], "eval.every=0", *argv[5:]]) == 0
    assert row(capsys.readouterr().out, "model").endswith("checkpoint every 500, no evaluation")
    assert cli_main([*argv[:5], "model.conditional=true", *argv[5:]]) == 0
    assert row(capsys.readouterr().out, "model").startswith("conditional dcgan on digits; ")


def test_options_may_stand_between_the_config_and_its_overrides(dry, capsys):
    """``train CFG --name r KEY=VALUE``: argparse ends ``nargs='*'`` at the first option; the words after it
    are the config's overrides all the same, in order (the later of two settings of a key wins)."""
    plans = []
    for argv in (["train", "--dry-run", "--name", "r", "--storage", str(dry), SWEEP_CONFIG,
                  "train.steps=40", "scaling.num_workers=3", "train.steps=30"],
                 ["train", SWEEP_CONFIG, "--name", "r", "train.steps=40", "--dry-run", "scaling.num_workers=3",
                  "--storage", str(dry), "train.steps=30"]):
        assert cli_main(argv) == 0
        plans.append(capsys.readouterr().out)
    assert plans[0] == plans[1]
    assert row(plans[1], "workers").startswith("3 ") and " 30 steps" in row(plans[1], "model")
    with pytest.raises(SystemExit) as refused:
        cli_main(["train", SWEEP_CONFIG, "--name", "r", "train.steps=40", "--nmae", "x"])
    assert refused.value.code == 2 and "unrecognized arguments: --nmae x" in capsys.readouterr().err


def as_resumable_run(run: Path, cfg: Config, step: int = 10, workers: int = 2) -> Path:
    """A run directory Ray Train would resume: config.yaml, a complete checkpoint, Ray's record of it."""
    ckpt = run / f"checkpoint_{step:06d}"
    ckpt.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (ckpt / "train_state.json").write_text(json.dumps({"step": step, "images_seen": 0, "data": {},
                                                       "world_size": workers}))
    for rank in range(workers):
        (ckpt / f"manifest_rank{rank}.json").write_text(json.dumps({"rank": rank, "files": {}}))
    record = {"checkpoint_dir_name": ckpt.name, "metrics": {}}
    (run / "checkpoint_manager_snapshot.json").write_text(
        json.dumps({"latest_checkpoint_result": record, "checkpoint_results": [record]}))
    return run


def test_train_dry_run_says_where_a_resume_starts_and_leaves_the_run_alone(dry, capsys):
    as_resumable_run(dry / "runs" / "r", Config.from_dict({"train": {"steps": 40}}))
    before = tree(dry)
    assert cli_main(["train", "--dry-run", "train.steps=40", "--storage", str(dry / "runs"), "--name", "r"]) == 0
    assert row(capsys.readouterr().out, "run") == "'r', resumed from checkpoint_000010 (step 10 of 40)"
    assert tree(dry) == before


def test_train_dry_run_refuses_a_changed_run_as_the_real_run_does(dry, capsys):
    as_resumable_run(dry / "runs" / "r", Config.from_dict({}))
    before = tree(dry)
    argv = ["train", "model.g_width=64", "--storage", str(dry / "runs"), "--name", "r"]
    assert cli_main([*argv, "--dry-run"]) == 2
    dry_error = capsys.readouterr().err
    assert cli_main(argv) == 2  # the real run, refused before Ray (the fixture fails the test otherwise)
    assert capsys.readouterr().err == dry_error
    assert "was trained with different settings (model.g_width: 32 -> 64)" in dry_error
    assert tree(dry) == before


def test_tune_dry_run_prints_trials_scheduler_and_per_trial_resources(dry, capsys):
    options = ["--dry-run", "--storage", str(dry / "runs"), "--name", "s"]
    assert cli_main(["tune", SWEEP_CONFIG, *options]) == 0
    out = capsys.readouterr().out
    assert row(out, "trials") == "8"
    assert row(out, "scheduler") == "asha (grace period 250 steps, keeps 1 of 2 at each rung)"
    assert row(out, "searcher") == "random, seed 0"
    assert row(out, "objective") == "fid, min"
    assert row(out, "per trial").startswith("2.01 CPUs (2 workers")
    assert row(out, "sweep dir") == str(dry / "runs" / "s")
    # Grid entries multiply the samples, as Tune runs them; the widest value of the space sets the resources.
    grid = "tune.space={model.g_width: {grid: [16, 32, 64]}, scaling.num_workers: {choice: [1, 4]}}"
    assert cli_main(["tune", SWEEP_CONFIG, "tune.num_samples=2", grid, *options]) == 0
    out = capsys.readouterr().out
    assert row(out, "trials") == "6 (2 samples x 3 grid points)"
    assert row(out, "per trial").startswith("4.01 CPUs (4 workers")
    assert list(dry.iterdir()) == []


def test_tune_dry_run_resumes_an_existing_sweep_only_with_resume(dry, capsys):
    sweep = dry / "runs" / "s"
    (sweep / "tune").mkdir(parents=True)
    base = yaml.safe_load(Path(SWEEP_CONFIG).read_text())
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(Config.from_dict(base).to_dict(), sort_keys=False))
    before = tree(dry)
    assert cli_main(["tune", SWEEP_CONFIG, "--dry-run", "--storage", str(dry / "runs"), "--name", "s"]) == 2
    assert "sweep 's' already exists" in capsys.readouterr().err
    assert cli_main(["tune", "--resume", "--dry-run", "--storage", str(dry / "runs"), "--name", "s"]) == 0
    out = capsys.readouterr().out
    assert row(out, "sweep") == "'s', resumed" and row(out, "trials") == "8"
    assert tree(dry) == before


def test_submit_dry_run_contacts_no_cluster(dry, capsys, monkeypatch):
    monkeypatch.delenv("DISTGAN_STORAGE", raising=False)
    address = "http://127.0.0.1:9"  # nothing listens there: a dry run that tried to connect would fail
    assert cli_main(["submit", "train.steps=5", "--dry-run", "--storage", "s3://bucket/runs", "--address", address,
                     "--name", "j"]) == 0
    out = capsys.readouterr().out
    assert row(out, "job") == "python -m distgan train config.yaml --address auto --storage s3://bucket/runs --name j"
    assert row(out, "run").startswith("'j' in s3://bucket/runs")
    assert cli_main(["submit", SWEEP_CONFIG, "--tune", "--dry-run", "--storage", "/cluster/runs", "--address",
                     address, "--name", "s"]) == 0
    out = capsys.readouterr().out
    assert row(out, "trials") == "8" and row(out, "scheduler").startswith("asha")
    # The same refusals as a real submission, before anything would be sent.
    assert cli_main(["submit", "train.steps=5", "--dry-run", "--storage", "runs", "--address", address]) == 2
    assert "give an absolute path on the cluster" in capsys.readouterr().err
    assert cli_main(["submit", "train.steps=5", "--dry-run", "--storage", "/x", "--address", "127.0.0.1:8265"]) == 2
    assert "http://HEAD:8265" in capsys.readouterr().err
    assert list(dry.iterdir()) == []


def test_a_dry_run_checks_a_uri_by_its_syntax_only(dry, capsys):
    assert cli_main(["train", "--dry-run", "--storage", "s3://KEY:SECRET@bucket/runs"]) == 2
    err = capsys.readouterr().err
    assert "credentials in the URI" in err and "SECRET" not in err
    # A store nobody answers for: the real run fails reaching it; the dry run does not try.
    down = "s3://bucket/runs?endpoint_override=127.0.0.1:9&scheme=http"
    assert cli_main(["train", "--dry-run", "--storage", down, "--name", "r"]) == 0
    out = capsys.readouterr().out
    assert row(out, "run dir") == "s3://bucket/runs/r" and "not contacted" in row(out, "run")
    assert list(dry.iterdir()) == []


# -- dry runs refuse what the real command refuses, whatever the storage ------------------------------


@pytest.mark.parametrize("argv", [
    ["train", "--storage", "s3://bucket/runs"],
    ["tune", SWEEP_CONFIG, "--storage", "s3://bucket/runs"],
    ["tune", "--resume", "--storage", "s3://bucket/runs"],
    ["submit", "train.steps=5", "--storage", "/nonexistent/runs", "--address", "http://127.0.0.1:9"],
    ["submit", SWEEP_CONFIG, "--tune", "--storage", "/nonexistent/runs", "--address", "http://127.0.0.1:9"],
    ["submit", "train.steps=5", "--storage", "s3://bucket/runs", "--address", "http://127.0.0.1:9"],
], ids=["train-uri", "tune-uri", "tune-resume-uri", "submit-unseen", "submit-tune-unseen", "submit-uri"])
@pytest.mark.parametrize("name", ["a/b", ".hidden"])
def test_a_dry_run_refuses_a_name_that_is_not_one_directory_under_any_storage(dry, capsys, monkeypatch, argv, name):
    monkeypatch.delenv("DISTGAN_STORAGE", raising=False)
    assert cli_main([*argv, "--dry-run", "--name", name]) == 2
    assert f"--name {name!r}: use a plain directory name" in capsys.readouterr().err
    assert list(dry.iterdir()) == []


def test_dry_runs_and_config_show_tune_refuse_a_sweep_the_real_tune_refuses(dry, capsys):
    """An empty space, and an ASHA first rung past the last step (Ray would assert it after starting)."""
    plain = str(ROOT / "configs" / "dcgan_digits.yaml")
    for argv in (["config", "show", "--tune", plain], ["tune", plain, "--dry-run", "--storage", "s3://b/r"],
                 ["tune", plain, "--dry-run", "--storage", str(dry)]):
        assert cli_main(argv) == 2
        assert "tune.space: a sweep needs at least one key to search" in capsys.readouterr().err
    for argv in (["config", "show", "--tune"], ["tune", "--dry-run", "--storage", str(dry)],
                 ["submit", "--tune", "--dry-run", "--storage", "/cluster/runs", "--address", "http://127.0.0.1:9"]):
        assert cli_main([*argv, SWEEP_CONFIG, "train.steps=100"]) == 2
        assert ("tune.scheduler.grace_period (250) must be at most train.steps (100)"
                in capsys.readouterr().err)
    assert list(dry.iterdir()) == []
