"""A worker group that cannot start never hangs a run or a sweep (issue 26), on the shared local Ray (4 CPUs).

Nothing here relies on a busy machine: room is taken away by a placement group the test reserves (3 CPUs),
so the first tries at starting the workers fail for certain. Those tries are short: the first one's timeout
(``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S``, read in the process that builds the trainer) is 1 ms, and Ray
waits for a placement group in whole seconds, so each try below a second is one look at the group.

- A run with no room shows its wait on the console and stops after ``scaling.start_timeout_s`` (3 s) with
  what it waited for and what is free; ``distgan train`` exits 1.
- A 2-trial sweep whose trials have each failed a try (the test watches Ray's placement-group table for it)
  gets its room back, and both trials finish. Before it, a real orphan is made: a Ray Train controller
  killed while it waited for its workers, as a stopped Tune trial's is, whose placement group Ray keeps.
  distgan removes it.

Afterwards no placement group may be left reserved, as Ray's state API lists them.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.state import list_actors, list_placement_groups

from distgan import load_config
from distgan.cli import main as cli_main
from distgan.launch.startup_wait import ATTEMPT_ENV, CONTROLLER_CLASS, actor_class, placement_records
from distgan.launch.tune import run_tune
from tiny_run import OVERRIDES

pytestmark = pytest.mark.ray

FIRST_TRY_S = "0.001"


def reserved_placement_groups() -> set[str]:
    """Placement groups that hold or wait for resources, as Ray's state API lists them (this cluster's: other
    clusters may run on the machine)."""
    return {pg.placement_group_id for pg in list_placement_groups(address=ray.get_runtime_context().gcs_address,
                                                                  limit=10_000) if pg.state != "REMOVED"}


TRAIN_ACTORS = {"RayTrainWorker", "SynchronizationActor"}
"""The actors of a worker group. (Not the controller, which holds no resources and lives on after ``fit`` while
the driver keeps a handle to it, as Ray Train's Ctrl-C handler does in the main thread; nor Ray Train's
detached placement-group cleaner, which holds none either and was seen to outlive a killed controller.)"""


def live_train_actors() -> set[tuple[str, str]]:
    """Ray Train's worker-group actors that are alive, as (class, id)."""
    return {(a.class_name, a.actor_id) for a in list_actors(address=ray.get_runtime_context().gcs_address,
                                                            limit=10_000, filters=[("state", "=", "ALIVE")])
            if a.class_name in TRAIN_ACTORS}


def record(pg_id: str):
    return next(r for r in placement_records() if r.id == pg_id)


def wait_for(condition, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what() if callable(what) else what}")


def idle_loop() -> None:
    """The training function of the controller that gets killed: it never runs (its workers never start)."""


@ray.remote(num_cpus=0)
class TrialLikeDriver:
    """Fits a TorchTrainer in a thread, as a Tune trial's driver does; killing it kills its controller."""

    def start(self, storage: str) -> None:
        from ray.train import RunConfig, ScalingConfig  # in the actor's process, where the trainer is built
        from ray.train.torch import TorchTrainer

        trainer = TorchTrainer(idle_loop, scaling_config=ScalingConfig(num_workers=2),
                               run_config=RunConfig(name="killed", storage_path=storage))
        threading.Thread(target=trainer.fit, daemon=True).start()


def make_orphan(storage: str):
    """The placement group of a Ray Train controller killed while it waited for its 2 workers (fewer CPUs are
    free): pending, and kept by Ray. Returns its record."""
    driver = TrialLikeDriver.remote()
    ray.get(driver.start.remote(storage))
    job = ray.get_runtime_context().get_job_id()
    orphan = wait_for(lambda: next((r for r in placement_records() if r.job_id == job and r.state == "PENDING"
                                    and len(r.bundles) == 2 and actor_class(r.creator_actor_id) == CONTROLLER_CLASS),
                                   None), "the controller's placement group pending")
    ray.kill(driver)  # its controller dies with it, mid-start
    wait_for(lambda: record(orphan.id).creator_actor_dead, "the controller dead")
    time.sleep(3)  # Ray's own placement-group cleaner polls every second: give it the chance to act
    assert record(orphan.id).state == "PENDING", "Ray removed the orphan itself: the test proves nothing"
    return orphan


def test_a_run_that_finds_no_room_stops_with_what_it_waited_for(local_ray, tmp_path, monkeypatch, capsys):
    before, actors_before = reserved_placement_groups(), live_train_actors()
    hold = placement_group([{"CPU": 3}])  # 1 of 4 CPUs free: 2 workers never fit
    assert hold.wait(30)
    monkeypatch.setenv(ATTEMPT_ENV, FIRST_TRY_S)
    started = time.monotonic()
    try:
        code = cli_main(["train", *OVERRIDES, "scaling.start_timeout_s=3", "tracking.wandb=false",
                         "--storage", str(tmp_path), "--name", "no-room"])
    finally:
        remove_placement_group(hold)
    elapsed = time.monotonic() - started

    assert code == 1  # a RunFailed: the message, no traceback
    out, err = capsys.readouterr()
    assert "distgan: error: run 'no-room': its 2 workers did not start within scaling.start_timeout_s=3 s" in err
    assert "for 2 x (1 CPU)" in err and "the cluster has 1 of 4 CPU free" in err, err
    assert "Raise scaling.start_timeout_s to wait longer" in err, err
    # The first try (1 ms) failed, and the wait showed on the console while it lasted.
    assert re.search(r"\[no-room\] waiting for the workers \(2 x 1 CPU\): \d s of scaling.start_timeout_s=3 s, try 2 "
                     r"\(last try: no room for the workers within 0.001 s\); the cluster has 1 of 4 CPU free", out), out
    # Bounded: the 3 s it may wait, plus Ray's start-up of the controller, never Ray's retry-forever.
    assert elapsed < 60, elapsed
    wait_for(lambda: reserved_placement_groups() <= before, "every try's placement group released", 30)
    wait_for(lambda: live_train_actors() <= actors_before, "every try's actors gone", 30)
    assert not (tmp_path / "no-room" / "generator.safetensors").exists()
    waited = re.search(r"waited (\d+) s over (\d+) tries", err)
    print(f"no room: {waited.group(0)}; stopped {elapsed:.1f} s after the call")


def test_a_sweep_whose_trials_failed_a_try_starts_once_room_frees_up_and_leaves_nothing(local_ray, tmp_path,
                                                                                       monkeypatch):
    before, actors_before = reserved_placement_groups(), live_train_actors()
    seen = {r.id for r in placement_records()}
    hold = placement_group([{"CPU": 3}])  # 1 of 4 CPUs free: the trials' drivers (0.01 each) fit, no worker does
    assert hold.wait(30)
    orphan = make_orphan(str(tmp_path / "ray"))
    job = ray.get_runtime_context().get_job_id()

    def controllers_that_failed_a_try() -> set[str]:
        """Live Ray Train controllers of this job with a removed 1-worker group: a try Ray gave up on."""
        return {r.creator_actor_id for r in placement_records() if r.id not in seen and r.job_id == job
                and r.state == "REMOVED" and r.bundles == ({"CPU": 1.0},) and not r.creator_actor_dead}

    failed: set[str] = set()
    placed_after: list[float] = []

    def release_once_both_trials_failed() -> None:
        try:  # while the hold is there no try can succeed, so each removed group is a failed try
            failed.update(wait_for(lambda: len(found := controllers_that_failed_a_try()) >= 2 and found,
                                   "both trials failing a try", 120))
        finally:
            remove_placement_group(hold)
        released = time.monotonic()
        wait_for(lambda: len({r.creator_actor_id for r in placement_records() if r.creator_actor_id in failed
                              and r.state == "CREATED"}) == 2, "both trials' workers placed", 120)
        placed_after.append(time.monotonic() - released)  # what the docs report: room freed -> workers placed

    # The sweep's process sets the first try's timeout; its trials' drivers run in Ray's workers and are
    # handed it. FID on the pixels (identity features): a sweep needs an objective, not a feature network.
    monkeypatch.setenv(ATTEMPT_ENV, FIRST_TRY_S)
    cfg = load_config(None, OVERRIDES + (
        "train.steps=3", "scaling.num_workers=1", "scaling.start_timeout_s=120", "tracking.wandb=false",
        "eval.every=3", "eval.metrics=fid", "eval.features=identity", "tune.num_samples=1",
        "tune.space={optim.g.lr: {grid: [2.0e-4, 4.0e-4]}}"))
    releaser = threading.Thread(target=release_once_both_trials_failed, daemon=True)
    started = time.monotonic()
    releaser.start()
    result = run_tune(cfg, name="slow-start", storage=tmp_path)
    elapsed = time.monotonic() - started
    releaser.join(timeout=5)

    assert len(failed) == 2  # each trial's first tries failed, and the trial went on
    assert [r["status"] for r in result.rows] == ["finished", "finished"], result.rows
    assert all(r["step"] == 3 for r in result.rows)
    # The orphan would have been placed once the hold went, holding 2 CPUs for as long as this process lives.
    assert record(orphan.id).state == "REMOVED"
    wait_for(lambda: reserved_placement_groups() <= before, "every trial's placement groups released", 30)
    # ... and no worker-group actor, of the killed controller's start or of the trials.
    wait_for(lambda: live_train_actors() <= actors_before,
             lambda: f"the sweep's worker-group actors gone: {live_train_actors() - actors_before}", 30)
    print(f"2-trial sweep whose first tries failed: {elapsed:.1f} s; both trials' workers placed "
          f"{placed_after[0] if placed_after else float('nan'):.1f} s after the room freed up")
