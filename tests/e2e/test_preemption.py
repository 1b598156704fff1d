"""A preemption notice: SIGTERM to one training worker mid-interval checkpoints at once and the run resumes there.

What a spot VM or Kubernetes does before it kills: the test sends SIGTERM from outside, to the process of one
Ray Train worker, between two scheduled checkpoints. The worker survives the signal (``distgan.launch.preemption``),
both ranks agree on a step, write a checkpoint at it, and stop the attempt; Ray Train restarts the group from
that checkpoint, and the run ends at its last step having trained no step twice. ``history.jsonl`` says so.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from distgan.launch.train import train
from distgan.tracking import history
from distgan.tracking.jsonl import read_metrics
from tiny_run import tiny

pytestmark = pytest.mark.ray

STEPS, CHECKPOINT_EVERY = 40, 30


def train_workers(started: float) -> list[psutil.Process]:
    """The Ray Train worker processes started since ``started`` (Ray names its actor processes after them)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline and cmdline[0].startswith("ray::RayTrainWorker") and proc.info["create_time"] >= started:
            found.append(proc)
    return found


def sigterm_one_worker_after(run_dir, step: int, started: float, sent: dict) -> None:
    """Wait until the run has logged ``step``, then SIGTERM one worker once."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        metrics = run_dir / "metrics.jsonl"
        if metrics.is_file() and any(r["step"] >= step for r in read_metrics(metrics)):
            workers = train_workers(started)
            if workers:
                sent["pid"] = workers[-1].pid
                os.kill(sent["pid"], signal.SIGTERM)
                return
        time.sleep(0.05)


def test_sigterm_to_a_worker_checkpoints_at_once_and_the_run_resumes_there(local_ray, tmp_path):
    started = time.time() - 1  # process create times are rounded
    sent: dict = {}
    watcher = threading.Thread(target=sigterm_one_worker_after, daemon=True,
                               args=(tmp_path / "spot", 6, started, sent))
    watcher.start()
    result = train(tiny(f"train.steps={STEPS}", f"train.checkpoint_every={CHECKPOINT_EVERY}", f"train.sample_every={STEPS}",
                        "eval.every=0", "tracking.wandb=false"),
                   name="spot", storage=tmp_path, progress=False)
    watcher.join(timeout=5)
    run = tmp_path / "spot"
    assert "pid" in sent, "the run ended before a worker could be told to stop"

    rows = history.read(run)
    assert [r["event"] for r in rows] == ["started", "preempted", "resumed", "finished"], rows
    preempted = rows[1]["step"]
    # Checkpointed at the step the ranks agreed on, between the scheduled checkpoints, and resumed there.
    assert 6 <= preempted < CHECKPOINT_EVERY, rows
    assert rows[2]["step"] == preempted and "after a preemption notice" in rows[2]["why"], rows
    assert rows[3]["step"] == STEPS and all(r["world_size"] == 2 for r in rows)
    assert result.metrics["step"] == STEPS and (run / "generator.safetensors").is_file()
    # No step trained twice, none missing: the log goes 2, 4, ..., STEPS once, at the same width throughout.
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(2, STEPS + 1, 2))
    assert {r["world_size"] for r in records} == {2}
    print(f"SIGTERM at step {preempted}: checkpointed and training again {rows[2]['time'] - rows[1]['time']:.1f} s "
          f"after the notice was acted on")
    # The signalled worker lived through the signal until Ray Train ended its attempt.
    assert not psutil.pid_exists(sent["pid"]) or psutil.Process(sent["pid"]).status() == psutil.STATUS_ZOMBIE
