"""A run kept under an ``s3://`` URI: Ray Train's checkpoints and the run's files go to the store, and a resume
on a node without the staging copy continues from the store alone, falling back past a truncated checkpoint.

The store is moto's S3 server on 127.0.0.1 (no cloud bucket can exist here); Ray, DeepSpeed and pyarrow's S3
client are the real ones.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from tiny_run import tiny

import distgan
from distgan.persist import checkpoint
from distgan.persist import rundir
from distgan.launch.train import train
from distgan.persist.storage import Storage
from distgan.tracking.jsonl import read_metrics

pytestmark = pytest.mark.ray

SETTINGS = ("scaling.num_workers=2", "deepspeed.zero_stage=1", "eval.every=0")


def objects(uri: str) -> dict[str, int]:
    """Every object under the URI's prefix, by key relative to it, with its size."""
    parts = urlsplit(uri)
    endpoint = parse_qs(parts.query)["endpoint_override"][0]
    s3 = boto3.client("s3", endpoint_url=f"http://{endpoint}")
    prefix = parts.path.lstrip("/") + "/"
    listed = s3.list_objects_v2(Bucket=parts.hostname, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: o["Size"] for o in listed if not o["Key"].endswith("/")}


def truncate_object(uri: str, key: str, drop: int) -> None:
    parts = urlsplit(uri)
    s3 = boto3.client("s3", endpoint_url=f"http://{parse_qs(parts.query)['endpoint_override'][0]}")
    full = f"{parts.path.strip('/')}/{key}"
    body = s3.get_object(Bucket=parts.hostname, Key=full)["Body"].read()
    s3.put_object(Bucket=parts.hostname, Key=full, Body=body[:-drop])


def test_a_run_under_s3_resumes_from_the_store_alone(local_ray, s3_storage, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # nothing may appear in the working directory (an "s3:" directory, say)
    first = train(tiny(*SETTINGS), name="s3run", storage=s3_storage, progress=False)
    store = Storage.parse(s3_storage)
    assert first.location == f"s3://{store.root}/s3run"
    kept = objects(s3_storage)
    # Ray's checkpoints (both ranks' parts of each: rank 1 wrote its own optimizer partition and manifest) ...
    for step in (3, 6):
        names = {k.split("/", 2)[2] for k in kept if k.startswith(f"s3run/checkpoint_{step:06d}/")}
        assert {"manifest_rank0.json", "manifest_rank1.json", "rng_rank1.safetensors", "train_state.json"} <= names
        assert "G/state/zero_pp_rank_1_mp_rank_00_optim_states.pt" in names, names
    # ... and the run's files, uploaded as they were written; links (W&B's latest-run) left out.
    for rel in ("config.yaml", "wandb_id", "metrics.jsonl", "startup.json", "generator.safetensors",
                "generator.json", "samples/step_000003.png", "samples/step_000006.png"):
        assert f"s3run/{rel}" in kept, rel
    assert any(k.startswith("s3run/wandb/offline-run-") for k in kept)
    assert not any(k.startswith("s3run/wandb/latest-run/") for k in kept)
    assert os.listdir(tmp_path) == []
    # The driver's copy of the outputs loads like any run directory.
    generator, meta = distgan.load_generator(first.run_dir)
    assert meta["step"] == 6 and sum(p.numel() for p in generator.parameters()) > 0
    first_records = read_metrics(first.run_dir / "metrics.jsonl")
    assert [r["step"] for r in first_records] == [2, 4, 6]

    # Another node: no staging copy. Its latest checkpoint was cut short in the store.
    shutil.rmtree(first.run_dir)
    bad = "checkpoint_000006/G/state/mp_rank_00_model_states.pt"
    truncate_object(s3_storage, f"s3run/{bad}", 1000)
    with caplog.at_level(logging.WARNING, logger="distgan"):
        second = train(tiny(*SETTINGS, "train.steps=7"), name="s3run", storage=s3_storage, progress=False)
    # The driver named the truncated object by its URI, from sizes alone, and the checkpoint it falls back to.
    assert f"s3://{store.root}/s3run/{bad} has" in caplog.text and "truncated" in caplog.text
    assert "resuming from checkpoint_000003 instead" in caplog.text
    assert second.metrics["step"] == 7
    records = read_metrics(second.run_dir / "metrics.jsonl")  # downloaded from the store, rewound, extended
    assert [r["step"] for r in records] == [2, 4, 6, 7]
    # Steps 4-6 trained again from checkpoint 3 (downloaded only once 6 was refused) give the same numbers
    # (step 6's log window, steps 5-6, lies wholly after the restore; step 4's does not).
    assert records[0] == first_records[0]  # before the checkpoint: kept from the store's metrics.jsonl
    assert records[1]["images_seen"] == first_records[1]["images_seen"]
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_g", "grad_norm_d", "images_seen"):
        assert records[2][key] == first_records[2][key], key
    latest, _ = rundir.committed_checkpoints(store.run("s3run"))
    assert latest == "checkpoint_000007"
    state = checkpoint.verify(store.run("s3run").child(latest))
    assert (state.step, state.world_size) == (7, 2)
    # The workers' checkpoint downloads went once restored; nothing was written locally but the staging copy.
    assert not (second.run_dir / ".checkpoints").exists() or not any((second.run_dir / ".checkpoints").iterdir())
    assert os.listdir(tmp_path) == []
    assert Path(os.environ["DISTGAN_STAGING_DIR"]) in second.run_dir.parents
