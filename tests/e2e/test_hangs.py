"""A rank that stalls becomes a worker failure that Ray Train restarts, not an endless wait.

Three stalls in one run, each on the first attempt that reaches it, on a 2-worker CPU run with
``train.collective_timeout_s`` of a few seconds (the stalled rank sleeps ten minutes):

1. rank 1 stalls before the metrics all-reduce of step 4: rank 0 waits in gloo's all-reduce, which times out
   (the process group's timeout is ``TorchConfig(timeout_s=...)``);
2. after the restart from checkpoint 3, rank 1 stalls before its report of step 4: rank 0 waits in Ray
   Train's report barrier, which times out (``RAY_TRAIN_COLLECTIVE_TIMEOUT_S``, set by the launcher);
3. after the next restart, rank 1 stalls before its first backward pass: rank 0 waits in DeepSpeed's
   gradient all-reduce, which runs on DeepSpeed's own copy of the world group and times out only because
   ``engines.bound_deepspeed_world_group`` made that copy with the run's timeout (torch's default: 30 min).

Each time Ray restarts the group from the last checkpoint, and the run still ends at its last step, in far
less time than one stall. Rank 0 notes what each of its attempts ended with, so the test knows which
timeout fired.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from distgan.launch.train import train
from distgan.tracking.jsonl import read_metrics
from tiny_run import tiny

pytestmark = pytest.mark.ray

TIMEOUT_S = 6
"""Short, but above anything one rank does alone in this run (evaluation is off; start-up is collective)."""
STALL_S = 600


def stall_rank1_once_per_place(loop_config: dict) -> None:
    """The production worker function, except that rank 1 sleeps STALL_S at step 4, once before the metrics
    all-reduce and, on the next attempt, once before its report; rank 0 records each attempt's outcome."""
    import ray.train

    from distgan.runtime import loop as worker
    from distgan.launch import session as session_mod

    run_dir = Path(loop_config["run_dir"])
    rank = ray.train.get_context().get_world_rank()

    def stall_once(marker: str) -> None:
        if not (run_dir / marker).exists():
            (run_dir / marker).touch()
            time.sleep(STALL_S)

    if rank == 1:
        collect_metrics = worker.Trainer.collect_metrics

        def stalling_collect_metrics(self, images_per_s):
            if self.state.step == 4:
                stall_once("stalled-in-all-reduce")
            return collect_metrics(self, images_per_s)

        class StallingSession(session_mod.RaySession):
            def report(self, metrics, checkpoint_dir=None, name=None):
                if metrics.get("step") == 4 and (run_dir / "stalled-in-all-reduce").exists():
                    stall_once("stalled-in-report")
                super().report(metrics, checkpoint_dir, name)

        from deepspeed.runtime.engine import DeepSpeedEngine

        backward = DeepSpeedEngine.backward

        def stalling_backward(self, loss, *args, **kwargs):
            if (run_dir / "stalled-in-report").exists():
                stall_once("stalled-in-gradient-reduce")
            return backward(self, loss, *args, **kwargs)

        worker.Trainer.collect_metrics = stalling_collect_metrics
        session_mod.RaySession = StallingSession
        DeepSpeedEngine.backward = stalling_backward

    if rank == 0:
        ckpt = ray.train.get_checkpoint()
        start = f"{Path(ckpt.path).name if ckpt else 'none'}\t{time.time()}"
    try:
        session_mod.train_fn(loop_config)
    except BaseException as exc:
        if rank == 0:
            with (run_dir / "attempts").open("a") as f:
                f.write(f"{start}\t{type(exc).__name__}\t{' '.join(str(exc).split())[-2000:]}\n")
        raise
    if rank == 0:
        with (run_dir / "attempts").open("a") as f:
            f.write(f"{start}\tfinished\t\n")


def test_a_stalled_rank_is_restarted_not_waited_for(local_ray, tmp_path):
    started = time.monotonic()
    result = train(tiny("eval.every=0", "tracking.wandb=false", f"train.collective_timeout_s={TIMEOUT_S}"),
                   name="stall", storage=tmp_path, progress=False, train_loop=stall_rank1_once_per_place)
    elapsed = time.monotonic() - started
    run = tmp_path / "stall"

    markers = ("stalled-in-all-reduce", "stalled-in-report", "stalled-in-gradient-reduce")
    assert all((run / m).exists() for m in markers)
    attempts = [line.split("\t") for line in (run / "attempts").read_text().splitlines()]
    assert [a[0] for a in attempts] == ["none"] + ["checkpoint_000003"] * 3, attempts
    # 1: gloo gave up on the all-reduce; 2: Ray Train's report barrier gave up on rank 1; 3: gloo gave up on
    # DeepSpeed's gradient all-reduce (DeepSpeed's group, with the run's timeout).
    assert "timed out" in attempts[0][3].lower() and f"{TIMEOUT_S * 1000}ms" in attempts[0][3], attempts[0]
    assert "collective operation timed out" in attempts[1][3] and "[1]" in attempts[1][3], attempts[1]
    assert "timed out" in attempts[2][3].lower() and f"{TIMEOUT_S * 1000}ms" in attempts[2][3], attempts[2]
    assert attempts[3][2] == "finished"
    # From each stall to the start of the next attempt's worker function: the timeout, Ray noticing the
    # failure, and a new worker group (the restore itself follows within a second or two).
    stalls = [(run / m).stat().st_mtime for m in markers]
    recovered = [float(attempts[i + 1][1]) - stalls[i] for i in (0, 1, 2)]

    assert result.metrics["step"] == 6
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [2, 4, 6]
    assert (run / "generator.safetensors").is_file()
    # Four starts of the worker group and three timeouts, nowhere near one stall.
    assert all(TIMEOUT_S < r < 60 for r in recovered), recovered
    assert elapsed < 200, f"took {elapsed:.0f} s"
    print(f"three stalls survived in {elapsed:.1f} s; from each stall to the restarted worker function: "
          f"{recovered[0]:.1f} s (all-reduce), {recovered[1]:.1f} s (report barrier), "
          f"{recovered[2]:.1f} s (DeepSpeed gradient all-reduce)")
