"""``distgan ls``: run directories written by the run's own writers (metrics log, history, failure record), one
per status, and a sweep; listed from a directory and from an S3 URI (the suite's local server), no Ray."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from distgan.cli import main as cli_main
from distgan.config import Config
from distgan.persist import catalog, rundir
from distgan.tracking import history
from distgan.tracking.jsonl import MetricsLog
from buckets import upload

DIRECTIONS = {"fid": "min", "kid": "min", "psnr": "max", "ssim": "max"}


def make_run(root: Path, name: str, family: str = "dcgan", steps: int = 100, records=(), events=(),
             checkpoints=(), generator_task=None, launched_ago: float = 60.0) -> Path:
    run = root / name
    run.mkdir(parents=True)
    cfg = Config.from_dict({"model": {"family": family}, "train": {"steps": steps}})
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    log = MetricsLog(run / "metrics.jsonl")
    for record in records:
        log.append(record)
    for event, step in events:
        history.append(run, event, step, 2, "test", time.time() - launched_ago)
    for step in checkpoints:
        (run / f"checkpoint_{step:06d}").mkdir()
        (run / f"checkpoint_{step:06d}" / "state.pt").write_bytes(b"")  # an object store keeps no empty directory
    if generator_task:
        (run / "generator.json").write_text(json.dumps({"task": generator_task, "step": steps}))
    return run


def age(path: Path, seconds: float) -> None:
    """Set every file and directory under ``path`` to have been written ``seconds`` ago."""
    then = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (then, then))


@pytest.fixture
def storage(tmp_path) -> Path:
    root = tmp_path / "runs"
    make_run(root, "done", records=[{"step": 50, "loss_g": 1.0, "fid": 2.0, "kid": 0.02},
                                    {"step": 75, "loss_g": 0.9},
                                    {"step": 100, "loss_g": 0.8, "fid": 1.5, "kid": 0.03}],
             events=[(history.STARTED, 0), (history.FINISHED, 100)], checkpoints=[50, 100], generator_task="generation")
    make_run(root, "sr", family="srresnet", steps=30,
             records=[{"step": 10, "psnr": 20.0}, {"step": 20, "psnr": 25.0}, {"step": 30, "psnr": 23.0}],
             events=[(history.STARTED, 0), (history.FINISHED, 30)], checkpoints=[30])
    broken = make_run(root, "broken", records=[{"step": 10, "loss_g": 1.0}, {"step": 30, "loss_g": float("nan")}],
                      events=[(history.STARTED, 0)], checkpoints=[20])
    rundir.record_failure(broken, RuntimeError("G diverged at step 31"))
    stopped = make_run(root, "stopped", records=[{"step": 40, "loss_g": 1.0}], events=[(history.STARTED, 0)],
                       checkpoints=[20, 40], launched_ago=3 * 3600)
    age(stopped, 2 * 3600)
    make_run(root, "live", records=[{"step": 20, "loss_g": 1.0}], events=[(history.STARTED, 0)])
    # A run resumed after it finished: a new start after the finish row, so it is running again.
    make_run(root, "again", steps=200, records=[{"step": 120, "loss_g": 1.0}],
             events=[(history.STARTED, 0), (history.FINISHED, 100), (history.RESUMED, 100)],
             generator_task="generation")
    sweep = root / "lr"
    sweep.mkdir()
    sweep_cfg = Config.from_dict({"model": {"family": "mlp"}, "train": {"steps": 60}, "tune": {"metric": "fid"}})
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(sweep_cfg.to_dict(), sort_keys=False))
    make_run(sweep / "trials", "t0", family="mlp", steps=60, records=[{"step": 60, "fid": 0.5}],
             events=[(history.STARTED, 0), (history.FINISHED, 60)])
    t1 = make_run(sweep / "trials", "t1", family="mlp", steps=60, records=[{"step": 60, "fid": 0.2}],
                  events=[(history.STARTED, 0), (history.FINISHED, 60)])
    (t1 / "attempts" / "attempt_000" / "checkpoint_000060").mkdir(parents=True)
    (t1 / "attempts" / "attempt_000" / "checkpoint_000060" / "state.pt").write_bytes(b"")
    (sweep / "results.json").write_text(json.dumps({"metric": "fid", "mode": "min", "trials": [{}, {}],
                                                    "best": {"trial": "t1", "fid": 0.2, "step": 60}}))
    (root / "not-a-run").mkdir()  # a directory with neither config.yaml nor sweep.yaml is left out
    return root


def by_name(entries) -> dict:
    return {e["name"] if isinstance(e, dict) else e.name: e for e in entries}


def test_every_status_task_step_best_and_checkpoint_is_read_from_the_directories(storage, capsys):
    assert cli_main(["ls", str(storage), "--json"]) == 0
    rows = by_name(json.loads(capsys.readouterr().out))
    assert set(rows) == {"done", "sr", "broken", "stopped", "live", "again", "lr"}
    done = rows["done"]
    assert (done["status"], done["task"], done["family"], done["step"], done["steps"]) == (
        "finished", "generation", "dcgan", 100, 100)
    # fid (the registry's first score) rather than kid, and its lowest value: 1.5 at step 100.
    assert (done["best_metric"], done["best_value"], done["best_step"]) == ("fid", 1.5, 100)
    assert done["checkpoint"] == "checkpoint_000100"
    sr = rows["sr"]
    assert (sr["task"], sr["best_metric"], sr["best_value"], sr["best_step"]) == ("super_resolution", "psnr", 25.0, 20)
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["error"] == "RuntimeError: G diverged at step 31"
    assert rows["broken"]["step"] == 30 and rows["broken"]["best_metric"] is None
    assert rows["stopped"]["status"] == "stopped" and rows["stopped"]["checkpoint"] == "checkpoint_000040"
    # From the launch the history records (3 h ago) to the last write (2 h ago).
    assert 3500 < rows["stopped"]["wall_s"] < 3700
    assert rows["live"]["status"] == "running" and rows["live"]["step"] == 20
    assert rows["again"]["status"] == "running" and rows["again"]["steps"] == 200
    sweep = rows["lr"]
    assert (sweep["kind"], sweep["status"], sweep["trials"], sweep["best_trial"], sweep["best_value"]) == (
        "sweep", "finished", 2, "t1", 0.2)
    assert sweep["checkpoint"] == "attempts/attempt_000/checkpoint_000060" and sweep["family"] == "mlp"


def test_the_table_has_one_line_per_run_with_its_fields(storage, capsys):
    assert cli_main(["ls", str(storage)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "TASK/FAMILY", "STATUS", "STEP", "BEST", "CHECKPOINT", "WALL"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"done", "sr", "broken", "stopped", "live", "again", "lr/"}
    assert rows["done"].split()[1:7] == ["generation/dcgan", "finished", "100/100", "fid", "1.5", "@100"]
    assert rows["broken"].split()[2] == "failed"
    assert "2 trials" in rows["lr/"] and "fid 0.2 (t1)" in rows["lr/"]
    assert rows["stopped"].split()[-1] == "1h00m"


def test_a_sweep_directory_lists_its_trials_and_a_run_itself(storage, capsys):
    assert cli_main(["ls", str(storage / "lr"), "--json"]) == 0
    assert sorted(by_name(json.loads(capsys.readouterr().out))) == ["t0", "t1"]
    assert cli_main(["ls", str(storage / "done"), "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["done"]


def test_a_sweep_without_results_is_ranked_from_its_trials(storage):
    (storage / "lr" / "results.json").unlink()
    sweep = by_name(catalog.list_storage(str(storage), DIRECTIONS))["lr"]
    assert (sweep.best_trial, sweep.best_value) == ("t1", 0.2)
    assert sweep.status == "running"  # its trials were written just now
    later = by_name(catalog.list_storage(str(storage), DIRECTIONS, now=time.time() + 2 * catalog.RUNNING_WITHIN_S))
    assert later["lr"].status == "stopped" and later["live"].status == "stopped"


def test_an_empty_or_missing_storage_is_said_plainly(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert cli_main(["ls", str(tmp_path / "empty")]) == 0
    assert "no runs or sweeps" in capsys.readouterr().out
    assert cli_main(["ls", str(tmp_path / "nope")]) == 2
    out, err = capsys.readouterr()
    assert f"{tmp_path / 'nope'} does not exist" in err and not out
    # ./runs, not named by the user, is made by the first train: nothing trained here yet, not a typo.
    monkeypatch.chdir(tmp_path / "empty")
    assert cli_main(["ls"]) == 0
    assert "no runs or sweeps in runs" in capsys.readouterr().out


def test_a_file_given_as_the_storage_is_refused_by_name(storage, capsys):
    config = storage / "done" / "config.yaml"
    assert cli_main(["ls", str(config)]) == 2
    assert f"{config} is a file" in capsys.readouterr().err


def test_files_written_after_training_do_not_make_a_stopped_run_running(storage):
    stopped = storage / "stopped"
    # `distgan report` and `distgan export` write into the run directory long after it stopped.
    (stopped / "report.html").write_text("<html></html>")
    (stopped / "generator.onnx").write_bytes(b"onnx")
    (stopped / "generator.onnx.json").write_text("{}")
    sweep = storage / "lr"
    (sweep / "results.json").unlink()
    age(sweep, 2 * 3600)
    (sweep / "report.html").write_text("<html></html>")
    rows = by_name(catalog.list_storage(str(storage), DIRECTIONS))
    assert rows["stopped"].status == "stopped" and 3500 < rows["stopped"].wall_s < 3700
    assert rows["lr"].status == "stopped"
    MetricsLog(stopped / "metrics.jsonl").append({"step": 41, "loss_g": 1.0})  # training again after all
    assert by_name(catalog.list_storage(str(storage), DIRECTIONS))["stopped"].status == "running"


def test_the_default_storage_is_trains():
    from distgan.launch.train import DEFAULT_STORAGE  # imports ray (the module only; nothing starts)

    assert catalog.DEFAULT_STORAGE == DEFAULT_STORAGE


def test_runs_under_an_s3_uri_are_listed_alike(storage, s3_server, s3_storage):
    bucket = s3_storage.split("://", 1)[1].split("/", 1)[0]
    uri = upload(storage, s3_server, bucket, prefix="runs")
    rows = by_name(catalog.list_storage(uri, DIRECTIONS))
    assert set(rows) == {"done", "sr", "broken", "stopped", "live", "again", "lr"}
    assert rows["done"].status == "finished" and rows["done"].best_value == 1.5
    assert rows["done"].checkpoint == "checkpoint_000100"
    assert rows["broken"].status == "failed" and "G diverged" in rows["broken"].error
    assert rows["live"].status == "running"  # just uploaded: the store's times are recent
    assert rows["lr"].trials == 2 and rows["lr"].best_trial == "t1"
    assert rows["done"].location.startswith(f"s3://{bucket}/runs/done")
    later = by_name(catalog.list_storage(uri, DIRECTIONS, now=time.time() + 2 * catalog.RUNNING_WITHIN_S))
    assert later["live"].status == "stopped" and later["stopped"].status == "stopped"
