"""``distgan submit`` never sends the submitting machine's W&B key: not in the job's runtime env, its
entrypoint, its metadata or the uploaded config. No cluster: the Jobs API client is replaced by one that
records what it was asked to submit (and the staged working directory while it still exists)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from distgan.config import Config
from distgan.launch import submit as submit_mod
from distgan.launch.train import worker_env


class RecordingClient:
    def __init__(self):
        self.jobs = []

    def submit_job(self, **kwargs):
        staged = Path(kwargs["runtime_env"]["working_dir"])
        files = {p.name: p.read_bytes() for p in staged.rglob("*") if p.is_file()}
        self.jobs.append((kwargs, files))
        return kwargs["submission_id"]


@pytest.fixture
def key(monkeypatch, tmp_path) -> str:
    key = f"distgan-sentinel-{uuid.uuid4().hex}"
    key_file = tmp_path / "wandb-key"
    key_file.write_text(key)
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("WANDB_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("WANDB_MODE", "offline")
    return key


@pytest.mark.parametrize("command,resume", [("train", False), ("tune", True)])
def test_a_submitted_job_carries_no_key(key, monkeypatch, tmp_path, command, resume):
    key_file = tmp_path / "wandb-key"
    recorder = RecordingClient()
    monkeypatch.setattr(submit_mod, "client", lambda address: recorder)
    cfg = Config()
    cfg.tracking.mode = "online"
    submit_mod.submit(cfg, "http://127.0.0.1:8265", "run", "/shared/runs", command=command, resume=resume)
    ((kwargs, files),) = recorder.jobs
    sent = json.dumps(kwargs, default=str).encode() + b"".join(files.values())
    assert key.encode() not in sent and str(key_file).encode() not in sent
    env_vars = kwargs["runtime_env"]["env_vars"]
    assert "WANDB_API_KEY" not in env_vars and "WANDB_API_KEY_FILE" not in env_vars
    assert env_vars["WANDB_MODE"] == "offline"  # the environment is forwarded, but only what is meant to be
    assert "config.yaml" in files


@pytest.mark.parametrize("use_gpu", [False, True])
def test_the_worker_runtime_env_carries_no_key(key, use_gpu):
    env = worker_env(use_gpu)
    assert key not in json.dumps(env) and not any(k.startswith("WANDB_API_KEY") for k in env)
