"""``distgan.persist.storage`` on a directory and on S3 (moto's S3 server on 127.0.0.1: no cloud bucket exists here),
and what the driver checks in a run kept under a URI before anything starts."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
import torch

from distgan.persist import checkpoint
from distgan.persist import rundir
from distgan.config import ConfigError
from distgan import load_config
from distgan.persist.storage import CheckpointDownloads, Storage, local_dir


def test_a_directory_is_local_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for given in ("runs", "file://" + str(tmp_path / "runs")):
        storage = Storage.parse(given)
        assert not storage.remote and storage.root == str(tmp_path / "runs") == storage.text


@pytest.mark.parametrize("uri, expected", [
    ("foo://bucket/runs", "not a storage URI this installation can open"),
    ("s3://bucket", "name a prefix inside the bucket"),
    ("gs://bucket/", "name a prefix inside the bucket"),
])
def test_a_bad_uri_is_named(uri, expected):
    with pytest.raises(ConfigError, match=expected) as err:
        Storage.parse(uri)
    assert f"--storage {uri!r}" in str(err.value)


def test_credentials_in_the_uri_are_refused_without_repeating_them():
    with pytest.raises(ConfigError, match="credentials in the URI") as err:
        Storage.parse("s3://AKIAEXAMPLE:s3cr3t-v4lue@bucket/runs")
    assert "s3cr3t" not in str(err.value) and "AKIAEXAMPLE" not in str(err.value)


def test_an_unreachable_store_fails_within_seconds_naming_it():
    uri = "s3://bucket/runs?endpoint_override=127.0.0.1:9&scheme=http"  # nothing listens on port 9
    started = time.monotonic()
    with pytest.raises(ConfigError, match="cannot be reached") as err:
        Storage.parse(uri).check_reachable()
    assert repr(uri) in str(err.value) and time.monotonic() - started < 30


def test_a_missing_bucket_is_named(s3_server):
    with pytest.raises(ConfigError, match="bucket 'no-such-bucket' does not exist"):
        Storage.parse(f"s3://no-such-bucket/runs?endpoint_override={s3_server}&scheme=http").check_reachable()


@pytest.fixture(params=["directory", "s3"])
def run_dir(request, tmp_path):
    """The same run directory API on a local directory and under an s3:// URI."""
    storage = (Storage.parse(tmp_path / "runs") if request.param == "directory"
               else Storage.parse(request.getfixturevalue("s3_storage")))
    storage.check_reachable()
    return storage.run("r")


def test_files_read_write_list_and_copy_alike(run_dir, tmp_path):
    assert run_dir.subdirs() == [] and not run_dir.is_file("config.yaml")
    with pytest.raises(FileNotFoundError, match="config.yaml"):
        run_dir.read_text("config.yaml")
    run_dir.write_text("config.yaml", "a: 1\n")
    run_dir.write_text("config.yaml", "a: 2\n")  # replaced whole
    assert run_dir.read_text("config.yaml") == "a: 2\n" and run_dir.size("config.yaml") == 5
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "x.bin").write_bytes(b"\0" * 1000)
    (tree / "y.txt").write_text("y")
    (tree / "link").symlink_to(tree / "sub", target_is_directory=True)  # like W&B's latest-run
    run_dir.upload(tree, "checkpoint_000002")
    assert run_dir.sizes("checkpoint_000002") == {"sub/x.bin": 1000, "y.txt": 1}
    assert run_dir.subdirs() == ["checkpoint_000002"] and run_dir.is_dir("checkpoint_000002")
    back = tmp_path / "back"
    back.mkdir()
    (back / "stale").write_text("replaced by the download")
    run_dir.download("checkpoint_000002", back)
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*") if p.is_file()) == ["sub/x.bin", "y.txt"]
    run_dir.delete("config.yaml")
    run_dir.delete("config.yaml")  # gone already: fine
    assert not run_dir.is_file("config.yaml")


def fake_checkpoint(run_dir, name: str, world_size: int = 2, step: int = 2) -> None:
    """Manifests, a train state and the files they list: what ``verify`` reads (no tensors)."""
    run_dir.write_text(f"{name}/train_state.json", json.dumps({"step": step, "images_seen": 64, "data": {},
                                                               "world_size": world_size}))
    for rank in range(world_size):
        run_dir.write_bytes(f"{name}/G/state/part{rank}.pt", b"\1" * (100 + rank))
        run_dir.write_text(f"{name}/manifest_rank{rank}.json",
                           json.dumps({"rank": rank, "files": {f"G/state/part{rank}.pt": 100 + rank}}))


def test_verify_reads_manifests_and_sizes_on_the_store(run_dir):
    fake_checkpoint(run_dir, "checkpoint_000002")
    assert checkpoint.verify(run_dir.child("checkpoint_000002")).world_size == 2
    run_dir.write_bytes("checkpoint_000002/G/state/part1.pt", b"\1" * 50)
    with pytest.raises(checkpoint.CheckpointError, match="part1.pt has 50 bytes, expected 101") as err:
        checkpoint.verify(run_dir.child("checkpoint_000002"))
    assert run_dir.display("checkpoint_000002/G/state/part1.pt") in str(err.value)
    run_dir.delete("checkpoint_000002/manifest_rank1.json")
    with pytest.raises(checkpoint.CheckpointError, match="rank 1 never finished writing"):
        checkpoint.verify(run_dir.child("checkpoint_000002"))


def as_ray_run(run_dir, latest: str, cfg) -> None:
    run_dir.write_text("config.yaml", json.dumps(cfg.to_dict()))
    kept = [{"checkpoint_dir_name": n, "metrics": {}} for n in run_dir.subdirs()]
    run_dir.write_text(rundir.RAY_SNAPSHOT, json.dumps({
        "latest_checkpoint_result": {"checkpoint_dir_name": latest, "metrics": {}}, "checkpoint_results": kept}))


def two_workers(n: int = 2):
    return load_config(None, (f"scaling.num_workers={n}",))


def test_the_driver_falls_back_past_a_truncated_checkpoint_on_s3(s3_storage, caplog):
    storage = Storage.parse(s3_storage)
    run = storage.run("r")
    fake_checkpoint(run, "checkpoint_000002", step=2)
    fake_checkpoint(run, "checkpoint_000004", step=4)
    run.write_bytes("checkpoint_000004/G/state/part0.pt", b"")
    as_ray_run(run, "checkpoint_000004", two_workers())
    with caplog.at_level(logging.WARNING, logger="distgan"):
        plan = rundir.check(storage, "r", two_workers())
    assert plan.resumed and plan.files.display() == run.display()
    assert f"{run.display('checkpoint_000004/G/state/part0.pt')} has 0 bytes" in caplog.text
    assert "resuming from checkpoint_000002 instead" in caplog.text


def test_a_resume_at_another_worker_count_under_a_uri_is_announced_as_resharded(s3_storage, caplog):
    storage = Storage.parse(s3_storage)
    run = storage.run("r")
    fake_checkpoint(run, "checkpoint_000002")
    as_ray_run(run, "checkpoint_000002", two_workers())
    with caplog.at_level(logging.WARNING, logger="distgan"):
        plan = rundir.check(storage, "r", two_workers(1))
    assert plan.resumed
    assert "checkpoint_000002 was written by 2 workers and this run has 1: it is resharded" in caplog.text


def test_create_writes_to_the_store_and_the_staging_copy(s3_storage):
    storage = Storage.parse(s3_storage)
    storage.run("r").write_text(rundir.FAILED, json.dumps({"error": "NonFiniteError", "message": "m"}))
    assert rundir.recorded_failure(storage.run("r")) == "NonFiniteError: m"
    made = rundir.prepare(storage, "r", two_workers())
    assert rundir.recorded_failure(made.files) is None  # a new command tries again
    assert made.files.read_text("wandb_id").strip() == made.wandb_id == (made.path / "wandb_id").read_text().strip()
    assert made.files.read_text("config.yaml") == (made.path / "config.yaml").read_text()
    assert rundir.prepare(storage, "r", two_workers()).wandb_id == made.wandb_id  # kept across restarts


def test_a_worker_downloads_the_checkpoints_it_tries_into_its_own_directory(s3_storage, tmp_path):
    run = Storage.parse(s3_storage).run("r")
    fake_checkpoint(run, "checkpoint_000002")
    downloads = CheckpointDownloads(run, tmp_path / "rank1")
    assert downloads.siblings() == ["checkpoint_000002"]
    downloads.fetch(tmp_path / "rank1" / "checkpoint_000002")
    assert checkpoint.verify(tmp_path / "rank1" / "checkpoint_000002").step == 2
    with pytest.raises(FileNotFoundError, match="checkpoint_000009 is not in the storage"):
        downloads.fetch(tmp_path / "rank1" / "checkpoint_000009")
    with pytest.raises(ValueError, match="not a download of"):
        downloads.fetch(tmp_path / "rank0" / "checkpoint_000002")
    downloads.discard()
    assert not (tmp_path / "rank1").exists()


def test_local_dir_names_files_by_their_path(tmp_path):
    d = local_dir(tmp_path / "ckpt")
    assert d.display("a/b") == str(tmp_path / "ckpt" / "a" / "b") and Path(d.path()) == tmp_path / "ckpt"


@pytest.mark.parametrize("root", ["s3://bucket/sweeps?endpoint_override=127.0.0.1:9&scheme=http", "LOCAL"])
def test_a_child_storage_keeps_the_query_and_paths_cross_as_text(root, tmp_path):
    store = Storage.parse(str(tmp_path) if root == "LOCAL" else root)
    trials = store.child("s/trials")
    assert trials.root == f"{store.root}/s/trials" and trials.remote == store.remote
    if store.remote:
        assert trials.text == "s3://bucket/sweeps/s/trials?endpoint_override=127.0.0.1:9&scheme=http"
    else:
        assert trials.text == str(tmp_path / "s" / "trials")
    # A path on the store (as Tune reports a checkpoint) crosses to another process as text, and back.
    ckpt = f"{store.root}/s/tune/trial_1/checkpoint_000002"
    again = Storage.parse(store.text_of(ckpt))
    assert again.root == ckpt and again.as_dir().parent().path() == f"{store.root}/s/tune/trial_1"
    if store.remote:
        with pytest.raises(ValueError, match="is not under"):
            store.text_of("elsewhere/checkpoint_000002")


def test_a_sweep_in_a_bucket_is_found_for_resume_and_never_started_twice(s3_storage):
    import yaml

    from distgan.launch.tune import resolve_sweep

    store = Storage.parse(s3_storage)
    cfg = load_config(None, ("tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}}",))
    _, sweep, local = resolve_sweep(cfg, store, "s", resume=False)
    assert sweep.text.startswith(s3_storage.split("?")[0] + "/s?") and not local.exists()
    with pytest.raises(ConfigError, match=r"--resume: no sweep to resume in s3://.*/runs/s"):
        resolve_sweep(None, store, "s", resume=True)
    sweep.as_dir().write_text("sweep.yaml", yaml.safe_dump(cfg.to_dict()))
    sweep.as_dir().write_text("tune/tuner.pkl", "state")
    with pytest.raises(ConfigError, match=r"sweep 's' already exists in s3://.*--resume"):
        resolve_sweep(cfg, store, "s", resume=False)
    resumed, again, local = resolve_sweep(None, store, "s", resume=True)
    assert resumed.tune.space == cfg.tune.space and again.text == sweep.text
    assert (local / "sweep.yaml").read_text() == sweep.as_dir().read_text("sweep.yaml")


def test_a_generator_in_a_bucket_is_sampled_and_evaluated_from_a_download(s3_storage, tmp_path, capsys):
    """``distgan sample/evaluate/upscale`` and ``train.init_from`` find a generator through ``find_generator``:
    given a URI, it downloads the export (or the newest checkpoint's) with its description and the run's
    config into the staging directory."""
    import dataclasses

    from distgan import cli
    from distgan.evaluate import config_for
    from distgan.persist.export import find_generator, load_generator, save_generator
    from distgan.models import build_generator

    cfg = load_config(None, ("model.g_width=8", "model.latent_dim=8"))
    g = build_generator(cfg.model, (1, 16, 16)).eval()
    meta = {"model": dataclasses.asdict(cfg.model), "data_shape": [1, 16, 16], "num_classes": 0, "step": 4}
    save_generator(tmp_path / "local" / "checkpoint_000004", g, meta)
    (tmp_path / "local" / "config.yaml").write_text("model: {g_width: 8, latent_dim: 8}\n")
    run = Storage.parse(s3_storage).run("gen")
    run.upload(tmp_path / "local", "")
    uri = s3_storage.replace("/runs?", "/runs/gen?")

    # No export yet: the newest checkpoint's generator, and the run's config beside the download.
    weights = find_generator(uri)
    assert weights.read_bytes() == (tmp_path / "local" / "checkpoint_000004" / "generator.safetensors").read_bytes()
    assert config_for(weights.parent, meta).model.g_width == 8
    module, got = load_generator(uri)
    assert got["step"] == 4 and all(torch.equal(a, b) for a, b in zip(module.state_dict().values(),
                                                                       g.state_dict().values()))
    assert cli.main(["sample", uri, "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0 and "step 4" in capsys.readouterr().out
    assert cli.main(["evaluate", uri, "--metrics", "fid", "--n", "64", "--features", "identity", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["step"] == 4 and scores["fid"] > 0

    # The final export wins once there; a stale description is never kept from the earlier download.
    save_generator(tmp_path / "export", g, {**meta, "step": 9})
    run.upload(tmp_path / "export" / "generator.safetensors", "generator.safetensors")
    with pytest.raises(FileNotFoundError, match="generator.json is missing"):
        load_generator(uri)
    run.upload(tmp_path / "export" / "generator.json", "generator.json")
    assert load_generator(uri)[1]["step"] == 9
    with pytest.raises(FileNotFoundError, match=r"s3://.*/runs/nothing holds no generator.safetensors"):
        find_generator(s3_storage.replace("/runs?", "/runs/nothing?"))


@pytest.mark.parametrize("path, data", [
    ("s3://bucket/ffhq256?endpoint_override=host:9000&scheme=http", "ffhq256"),
    ("s3://bucket/data/ffhq256/", "ffhq256"),
    ("file:///srv/photos/", "photos"),
    ("~/images/faces", "faces"),
])
def test_a_default_run_name_is_one_plain_directory_name(path, data):
    """Without --name a run is named after its data: never after a URI's store options or a trailing slash."""
    from distgan.config import Config
    from distgan.persist import layout, rundir

    name = rundir.default_name(Config.from_dict({"data": {"name": None, "path": path}}))
    assert re.fullmatch(rf"dcgan_{data}-\d{{8}}-\d{{6}}", name), name
    layout.check_name(name)
