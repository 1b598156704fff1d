"""A W&B API key never lands in a file: a sentinel key is set, a tiny run trains with W&B offline, and every
file is grepped for it as bytes: the run directory (config.yaml, metrics.jsonl, samples, checkpoints with
DeepSpeed's .pt files, the exported generator, the W&B offline run and its logs), W&B's own service logs
(~/.cache/wandb/logs), Ray's session directory (every log of every process) and the console output.

Two ways a key reaches a run: in the environment of ``distgan train`` (which starts its own Ray, so every
Ray process inherits it from the start), and as a file named by ``WANDB_API_KEY_FILE`` (a mounted cluster
secret), read on the workers. ``distgan submit`` is checked without a cluster in tests/launch/test_submit_secrets.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from distgan.launch.train import train
from tiny_run import OVERRIDES, tiny

pytestmark = pytest.mark.ray

# Short and cheap, but with a committed checkpoint (DeepSpeed .pt files), samples and a W&B run; no evaluation.
RUN = ("train.steps=3", "train.checkpoint_every=3", "eval.every=0", "tracking.mode=offline")
WANDB_LOGS = Path("~/.cache/wandb/logs").expanduser()
KEY_FILE = "wandb-api-key"


def sentinel() -> str:
    """A fresh key in a form W&B accepts (an on-prem style prefix, 40+ characters), so nothing refuses it."""
    from wandb.sdk.lib.wbauth.validation import check_api_key

    key = f"distgan-sentinel-{uuid.uuid4().hex}"
    assert check_api_key(key) is None, check_api_key(key)
    return key


def files_holding(secret: str, *roots: Path) -> tuple[list[str], int]:
    """The files under ``roots`` whose bytes contain ``secret``, and how many files were read."""
    needle, hits, read = secret.encode(), [], 0
    for root in roots:
        for path in Path(root).rglob("*"):
            if not path.is_file() or path.is_symlink():  # sockets, pipes, links
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            read += 1
            if needle in data:
                hits.append(str(path))
    return hits, read


def test_the_grep_finds_a_planted_key(tmp_path):
    key = sentinel()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "blob.bin").write_bytes(b"\x00\x01" + key.encode() + b"\xff")
    assert files_holding(key, tmp_path) == ([str(tmp_path / "a" / "b" / "blob.bin")], 1)


def assert_whole_run(run: Path) -> None:
    """The run directory has every kind of file the grep must cover, so a clean grep means something."""
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    assert list(run.glob("checkpoint_000003/[GD]/state/*.pt")), "no DeepSpeed files to grep"
    assert list(run.glob("wandb/offline-run-*/run-*.wandb")), "no W&B offline run to grep"
    assert list(run.glob("wandb/offline-run-*/logs/debug*.log"))


def test_a_key_in_the_environment_of_distgan_train_is_in_no_file(tmp_path):
    """The real command with its own Ray (in a short temporary directory of its own, to grep all of it)."""
    key = sentinel()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-secrets-", dir="/tmp"))  # unix socket paths must stay short
    try:
        env = dict(os.environ, WANDB_API_KEY=key, WANDB_MODE="offline", RAY_TMPDIR=str(ray_tmp),
                   PYTHONWARNINGS="ignore")
        proc = subprocess.run([sys.executable, "-m", "distgan", "train", *OVERRIDES, *RUN, "--name", "secrets",
                               "--storage", str(tmp_path / "runs")],
                              env=env, capture_output=True, timeout=420)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
        run = tmp_path / "runs" / "secrets"
        assert_whole_run(run)
        sessions = list((ray_tmp / "ray").glob("session_2*"))
        assert sessions and list(sessions[0].glob("logs/*")), "no Ray session logs to grep"
        hits, read = files_holding(key, run, ray_tmp, WANDB_LOGS)
        assert hits == [], f"the W&B key is in {hits}"
        assert read > 50
        assert key.encode() not in proc.stdout + proc.stderr
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def key_file_loop(loop_config: dict) -> None:
    """The worker function, with the key only in a file that ``WANDB_API_KEY_FILE`` names (a mounted secret).

    The file lies beside the storage directory. Rank 0 notes a hash of the key W&B was given, so the test
    knows the key was in use; the worker's environment is put back afterwards.
    """
    import ray.train

    from distgan.launch.session import train_fn

    outside = Path(loop_config["run_dir"]).parent.parent
    saved = {k: os.environ.pop(k) for k in ("WANDB_API_KEY", "WANDB_API_KEY_FILE") if k in os.environ}
    os.environ["WANDB_API_KEY_FILE"] = str(outside / KEY_FILE)
    try:
        train_fn(loop_config)
        if ray.train.get_context().get_world_rank() == 0:
            used = os.environ.get("WANDB_API_KEY", "")
            (outside / "key-sha256").write_text(hashlib.sha256(used.encode()).hexdigest())
    finally:
        os.environ.pop("WANDB_API_KEY", None)
        os.environ.pop("WANDB_API_KEY_FILE", None)
        os.environ.update(saved)


def test_a_key_file_is_read_into_no_file(local_ray, tmp_path, monkeypatch):
    import ray

    key = sentinel()
    (tmp_path / KEY_FILE).write_text(key + "\n")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_API_KEY_FILE", str(tmp_path / KEY_FILE))  # the driver's environment too
    train(tiny(*RUN), name="secrets", storage=tmp_path / "runs", train_loop=key_file_loop, progress=False)
    assert (tmp_path / "key-sha256").read_text() == hashlib.sha256(key.encode()).hexdigest(), \
        "rank 0 never had the key: the test would prove nothing"
    run = tmp_path / "runs" / "secrets"
    assert_whole_run(run)
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    assert list(session.glob("logs/worker-*")), "no Ray worker logs to grep"
    hits, _ = files_holding(key, run, session, WANDB_LOGS)
    assert hits == [], f"the W&B key is in {hits}"
