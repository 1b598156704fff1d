"""The logic that bounds a start of the workers, in-process: each try's timeout, the deadline over all tries,
the error's words, which placement groups count as left behind, and the error's way back through Ray.
The end-to-end behaviour on a real Ray is in tests/e2e/test_start_timeout.py."""

from __future__ import annotations

import pickle

import pytest
from ray.train import ControllerError
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

from distgan.config import ConfigError
from distgan.launch.startup_wait import (ATTEMPT_ENV, KEY, RAY_ATTEMPT_S, PlacementRecord, StartClock, StartupTimeout,
                                         attempt_timeout, describe_free, describe_try, describe_worker,
                                         first_attempt_s, left_behind, startup_timeout_of, timeout_message)
from distgan.persist.rundir import RunFailed


def test_the_first_try_takes_rays_timeout_from_the_environment_or_rays_default():
    assert first_attempt_s({}) == RAY_ATTEMPT_S == 60.0
    assert first_attempt_s({ATTEMPT_ENV: "0.5"}) == 0.5
    for bad in ("soon", "0", "-3", "inf", "nan"):
        with pytest.raises(ConfigError, match=f"{ATTEMPT_ENV}=.*must be a number of seconds > 0"):
            first_attempt_s({ATTEMPT_ENV: bad})


def test_tries_double_up_to_rays_60_s_and_never_outlast_the_start():
    assert [attempt_timeout(1.0, n, 1e9) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [attempt_timeout(60.0, n, 1e9) for n in (1, 2, 10)] == [60, 60, 60]  # Ray's own behaviour by default
    assert attempt_timeout(300.0, 3, 1e9) == 300  # a first try set longer stays as set
    # Cut to what remains of the start's time, in the whole seconds Ray waits: never a string of sub-second
    # looks at the end (Ray rounds a wait down to whole seconds).
    assert attempt_timeout(60.0, 2, 12.5) == 13
    assert attempt_timeout(4.0, 3, 0.3) == 1
    assert attempt_timeout(60.0, 2, -1.0) == 0.0
    assert attempt_timeout(0.001, 10_000, 1e9) == 60  # no overflow however many tries


def test_a_start_is_bounded_by_its_timeout_whatever_the_tries_and_a_restart_gets_it_whole():
    clock = StartClock(timeout_s=100.0, first_s=0.001)
    now, tries = 1000.0, []
    while (seconds := clock.next_try(now)) is not None:
        tries.append(seconds)
        now += seconds + 0.01  # each try fails after its whole timeout
    assert tries[:3] == [0.001, 0.002, 0.004] and max(tries) <= 60
    assert tries[-1] < tries[-2] * 2 and tries[-1] == int(tries[-1])  # the last try: the whole seconds left
    assert 100.0 <= clock.waited(now) < 101.5  # the budget, up to Ray's whole second, then no further try
    assert sum(tries) < 101
    assert sum(t < 1 for t in tries) == 10  # only the first tries look once; then whole seconds
    assert clock.next_try(now + 50) is None  # spent stays spent until the group starts

    clock.started()  # (it never did here; a restart after a running group starts the same way)
    assert clock.next_try(now + 60) == 0.001 and clock.waited(now + 60) == 0


def test_the_timeout_says_what_it_waited_for_what_is_free_and_which_key_to_change():
    busy = timeout_message("run1", 600, 612.4, 12, 2, {"CPU": 1.0}, {"CPU": 1.99}, {"CPU": 4.0},
                           "no room for the workers within 60 s")
    assert busy.startswith(f"run 'run1': its 2 workers did not start within {KEY}=600 s: waited 612 s over 12 "
                           f"tries for 2 x (1 CPU) (last try: no room for the workers within 60 s)")
    assert "the cluster has 1.99 of 4 CPU free" in busy
    assert f"Raise {KEY} to wait longer" in busy and "scaling.num_workers" in busy

    # More than the whole cluster holds: waiting longer is not the answer, unless nodes are coming.
    short = timeout_message("run2", 30, 31, 2, 5, {"CPU": 1.0}, {"CPU": 4.0}, {"CPU": 4.0}, None)
    assert "The cluster has only 4 CPU in all, and the workers need 5: lower scaling.num_workers" in short
    assert "last try" not in short
    gpus = timeout_message("run3", 30, 31, 2, 2, {"CPU": 1.0, "GPU": 1.0}, {"CPU": 8.0}, {"CPU": 8.0}, None)
    assert "2 x (1 CPU + 1 GPU)" in gpus and "0 of 0 GPU free" in gpus and "only 0 GPU in all" in gpus


def test_resources_read_as_a_person_writes_them():
    assert describe_worker({"CPU": 2.0, "GPU": 0.0}) == "2 CPU"
    assert describe_worker({"CPU": 0.5, "memory": 0}) == "0.5 CPU"
    assert describe_free({"CPU": 1.0}, {"CPU": 0.0099999}, {"CPU": 4.0}) == "0.01 of 4 CPU free"


def test_a_failed_try_is_told_in_a_few_words():
    timed_out = ControllerError(WorkerGroupStartupTimeoutError(num_workers=2))
    assert describe_try(timed_out, 0.004) == "no room for the workers within 0.004 s"
    failed = ControllerError(RuntimeError("worker died while starting\nTraceback ..."))
    assert describe_try(failed, 1.0) == "worker died while starting"  # Ray's wrapper unwrapped, one line
    assert describe_try(RuntimeError("x" * 500), 1.0).endswith("...")


def record(id: str, *, state="CREATED", job="01000000", creator="c0", dead=True, detached=False):
    return PlacementRecord(id=id, state=state, job_id=job, creator_actor_id=creator, creator_actor_dead=dead,
                           detached=detached, bundles=({"CPU": 1.0}, {"CPU": 1.0}))


def test_only_groups_of_dead_train_controllers_of_this_job_or_the_controllers_own_count_as_left_behind():
    classes = {"c0": "TrainController", "c1": "TrainController", "t": "Trainable", "me": "TrainController"}
    records = [
        record("orphan"),                                     # a dead controller's, placed: holds CPUs for nothing
        record("pending-orphan", state="PENDING"),            # a dead controller's, waiting for room
        record("gone", state="REMOVED"),
        record("detached", detached=True),                    # outlives its creator by design
        record("other-job", job="02000000"),                  # another driver's: its own distgan cleans it
        record("alive", creator="c1", dead=False),            # a live controller's running group
        record("not-train", creator="t"),                     # some other dead actor's
        record("driver", creator="ffffffff", dead=True),      # a driver's (a test's, Tune's): not an actor
        record("mine", creator="me", dead=False),             # this controller's, from a try Ray did not clean up
    ]
    found = left_behind(records, "01000000", lambda actor: classes.get(actor, ""))
    assert [r.id for r in found] == ["orphan", "pending-orphan"]
    found = left_behind(records, "01000000", lambda actor: classes.get(actor, ""), own_actor_id="me")
    assert [r.id for r in found] == ["orphan", "pending-orphan", "mine"]


def test_the_timeout_comes_back_from_the_controller_as_itself():
    # It crosses Ray pickled inside Ray Train's ControllerError, as fit raises it.
    raised = pickle.loads(pickle.dumps(ControllerError(StartupTimeout("run 'x': its 2 workers did not start"))))
    found = startup_timeout_of(raised)
    assert isinstance(found, StartupTimeout) and isinstance(found, RunFailed)  # the CLI's exit 1, no traceback
    assert str(found) == "run 'x': its 2 workers did not start"
    assert startup_timeout_of(ControllerError(RuntimeError("other"))) is None
    assert startup_timeout_of(ValueError("other")) is None
