"""A worker group that cannot start stops after ``scaling.start_timeout_s``, instead of waiting forever.

Ray Train 2.60 starts a run's workers in a placement group. Its controller waits
``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` (60 s) for the group to be placed, removes it, and tries again,
with no end (``FailureConfig.controller_failure_limit`` is -1). Two ways a start then hangs (issue 26):

- The cluster never has room: every minute a new try, never an error.
- A placement group left behind. Ray Train removes its group's placement group when a start fails and when
  a run ends, and a detached cleaner removes a started group's if its controller dies. But a controller
  killed while it waits for its group (a Tune trial stopped, failed or restarted during a start, taking
  its controller with it) leaves that group pending, and Ray keeps a placement group an actor made until
  the creator actor *and* its job are gone: the job is the driver, alive for the whole sweep or test
  session. Once room frees up the orphan is placed, holds CPUs that nothing uses, and every later start
  waits behind it.

``StartupWatch``, a callback inside the controller, answers both. Before each try at starting the group (the
first start and each restart) it removes the placement groups that dead Ray Train controllers of this job
left, and any its own controller's failed try left; it gives that try Ray's per-try timeout (doubling up to
60 s) cut to what remains of ``scaling.start_timeout_s``; and once that is spent it stops the run with
``StartupTimeout``: what the workers waited for, what the cluster has free, which key to change. Between
tries it says on the console how long it has waited. Actors need no such help: Ray Train kills a failed
try's, and a killed controller's workers die with it (it owns them).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

import ray
from ray._private.state import state as gcs_state
from ray.core.generated.gcs_pb2 import PlacementGroupTableData
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError
from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback
from ray.util.placement_group import PlacementGroup, remove_placement_group

from distgan.config import ConfigError
from distgan.launch.progress import ForwardReports
from distgan.persist.rundir import RunFailed

log = logging.getLogger(__name__)

KEY = "scaling.start_timeout_s"
ATTEMPT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
"""Ray Train's timeout of one try at placing the worker group (ray/train/v2/_internal/constants.py). The
controller reads it from its own environment each time it builds a group, so the watch sets it there."""
RAY_ATTEMPT_S = 60.0
"""Ray Train's default for one try; a try never waits longer unless the environment asks for longer."""
CONTROLLER_CLASS = "TrainController"
"""The class of Ray Train's controller actor: the only creator whose placement groups distgan removes."""


class StartupTimeout(RunFailed):
    """The worker group did not start within ``scaling.start_timeout_s``."""


# -- the timing (pure) ------------------------------------------------------------


def first_attempt_s(environ: Optional[dict] = None) -> float:
    """The first try's timeout: ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` where this process sets it, else
    Ray's 60 s. Read where the trainer is built, the process whose environment Ray hands its controller."""
    raw = (os.environ if environ is None else environ).get(ATTEMPT_ENV)
    if raw is None:
        return RAY_ATTEMPT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{ATTEMPT_ENV}={raw!r}: must be a number of seconds > 0 (one try at starting the "
                          f"workers; {KEY} bounds them all)")
    return seconds


def attempt_timeout(first_s: float, attempt: int, remaining_s: float) -> float:
    """Timeout of try ``attempt`` (1, 2, ...): the first try's, doubled each try up to Ray's 60 s (a first try
    set longer stays as set), and no longer than the time that remains, rounded up to whole seconds: Ray waits
    for the placement group in whole seconds, rounded down, so a try under a second only looks once, and the
    last fraction of a second would otherwise be spent in such looks, one after another."""
    grown = max(first_s, min(first_s * 2.0 ** min(attempt - 1, 64), RAY_ATTEMPT_S))
    return min(grown, float(math.ceil(max(remaining_s, 0.0))))


# -- the words (pure) ----------------------------------------------------------------


def _amount(value: float) -> str:
    return f"{value:.3g}"


def describe_worker(per_worker: dict) -> str:
    """``{"CPU": 1.0, "GPU": 1.0}`` -> ``1 CPU + 1 GPU``."""
    return " + ".join(f"{_amount(n)} {kind}" for kind, n in per_worker.items() if n) or "no resources"


def describe_free(per_worker: dict, available: dict, total: dict) -> str:
    """What the cluster has free of each kind the workers ask for: ``1.99 of 4 CPU free``."""
    kinds = [kind for kind, n in per_worker.items() if n]
    return ", ".join(f"{_amount(available.get(k, 0.0))} of {_amount(total.get(k, 0.0))} {k} free" for k in kinds)


def timeout_message(label: str, timeout_s: float, waited_s: float, attempts: int, num_workers: int,
                    per_worker: dict, available: dict, total: dict, last_try: Optional[str]) -> str:
    """The error of a start that ran out of time: what it waited for, what the cluster has, what to change."""
    need = {kind: n * num_workers for kind, n in per_worker.items() if n}
    short = {kind: n for kind, n in need.items() if n > total.get(kind, 0.0)}
    text = (f"run {label!r}: its {num_workers} workers did not start within {KEY}={timeout_s:g} s: waited "
            f"{waited_s:.0f} s over {attempts} tries for {num_workers} x ({describe_worker(per_worker)})"
            + (f" (last try: {last_try})" if last_try else "")
            + f"; the cluster has {describe_free(per_worker, available, total)}. ")
    if short:
        kind = next(iter(short))
        return text + (f"The cluster has only {_amount(total.get(kind, 0.0))} {kind} in all, and the workers need "
                       f"{_amount(short[kind])}: lower scaling.num_workers or scaling.cpus_per_worker, or add "
                       f"nodes (raise {KEY} while an autoscaler adds them)")
    return text + (f"Raise {KEY} to wait longer, free what other work holds, or lower scaling.num_workers or "
                   f"scaling.cpus_per_worker")


def describe_try(error: BaseException, attempt_s: float) -> str:
    """One failed try in a few words: Ray's timeout, or the first line of what failed."""
    failure = getattr(error, "controller_failure", error)
    if isinstance(failure, WorkerGroupStartupTimeoutError):
        return f"no room for the workers within {attempt_s:g} s"
    line = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
    return line if len(line) <= 200 else line[:197] + "..."


# -- placement groups left behind -------------------------------------------------------


@dataclass(frozen=True)
class PlacementRecord:
    """The fields of Ray's placement-group table that say whose a group is and whether it still holds."""

    id: str
    state: str
    job_id: str
    creator_actor_id: str
    creator_actor_dead: bool
    detached: bool
    bundles: tuple

    def describe(self) -> str:
        return f"{self.id[:12]}... ({len(self.bundles)} x {describe_worker(self.bundles[0]) if self.bundles else '-'})"


def placement_records() -> list[PlacementRecord]:
    """Every placement group the cluster knows, from Ray's GCS table.

    Read through Ray's private GCS accessor: the public ``ray.util.placement_group_table`` and the state API
    drop the creator fields (``creator_actor_id``, ``creator_actor_dead``) that tell an orphan. Pinned Ray
    (constraints.txt); tests/e2e/test_start_timeout.py makes a real orphan and sees it found.
    """
    records = []
    for raw in gcs_state._connect_and_get_accessor().get_placement_group_table():
        pg = PlacementGroupTableData.FromString(raw)
        records.append(PlacementRecord(
            id=pg.placement_group_id.hex(), state=PlacementGroupTableData.PlacementGroupState.Name(pg.state),
            job_id=pg.creator_job_id.hex(), creator_actor_id=pg.creator_actor_id.hex(),
            creator_actor_dead=pg.creator_actor_dead, detached=pg.is_detached,
            bundles=tuple(dict(b.unit_resources) for b in pg.bundles)))
    return records


def left_behind(records: list[PlacementRecord], job_id: str, class_of: Callable[[str], str],
                own_actor_id: Optional[str] = None) -> list[PlacementRecord]:
    """The groups of job ``job_id`` to remove: those a dead Ray Train controller made, and with
    ``own_actor_id`` (a controller about to start a group) those it made itself: before a start, its last
    group has been shut down, so any still there is left from a try Ray did not clean up."""
    found = []
    for record in records:
        if record.state == "REMOVED" or record.detached or record.job_id != job_id:
            continue
        if own_actor_id is not None and record.creator_actor_id == own_actor_id:
            found.append(record)
        elif record.creator_actor_dead and class_of(record.creator_actor_id) == CONTROLLER_CLASS:
            found.append(record)
    return found


def actor_class(actor_id: str) -> str:
    """The class of an actor, dead or alive, from Ray's actor table ('' for a driver or an unknown id)."""
    try:
        return gcs_state.actor_table(actor_id).get("ActorClassName", "")
    except Exception:  # a driver's nil id, or an id the table no longer holds: not a controller we know
        return ""


def remove_left_behind(own_actor_id: Optional[str] = None) -> list[PlacementRecord]:
    """Remove this job's groups that ``left_behind`` names; returns them."""
    job = ray.get_runtime_context().get_job_id()
    found = left_behind(placement_records(), job, actor_class, own_actor_id)
    for record in found:
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(record.id))))
    return found


def clear_after_sweep(wait_s: float = 10.0) -> list[PlacementRecord]:
    """After a sweep: let the controllers of stopped trials die (bounded), then remove what they left."""
    job = ray.JobID(bytes.fromhex(ray.get_runtime_context().get_job_id()))
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline and any(
                a.get("ActorClassName") == CONTROLLER_CLASS
                for a in gcs_state.actor_table(None, job_id=job, actor_state_name="ALIVE").values()):
            time.sleep(0.2)
        return remove_left_behind()
    except Exception as exc:  # the sweep's results matter more: warn, and the next start clears them anyway
        log.warning("could not look for placement groups left by stopped trials: %r", exc)
        return []


# -- the watch, inside Ray Train's controller ------------------------------------------------


class StartClock:
    """How long the current start of the workers has waited, and what its next try may take (pure: the
    times are given)."""

    def __init__(self, timeout_s: float, first_s: float):
        self.timeout_s, self.first_s = float(timeout_s), float(first_s)
        self.since: Optional[float] = None  # when the current start began; None while the group runs
        self.tries = 0
        self.try_s = 0.0
        self.last_try: Optional[str] = None  # how the last failed try ended

    def next_try(self, now: float) -> Optional[float]:
        """The timeout of the next try, or None when the start has spent ``timeout_s`` (after one try at least)."""
        if self.since is None:
            self.since, self.tries, self.last_try = now, 0, None
        waited = now - self.since
        if self.tries and waited >= self.timeout_s:
            return None
        self.tries += 1
        self.try_s = attempt_timeout(self.first_s, self.tries, self.timeout_s - waited)
        return self.try_s

    def waited(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since

    def started(self) -> None:
        """The group is up: the next start (a restart) has the whole ``timeout_s`` again."""
        self.since = None


class StartupWatch(ControllerCallback, WorkerGroupCallback):
    """Bounds every start of the worker group by ``timeout_s`` and clears what blocks it (module docstring).

    Built where the trainer is built and pickled into the controller, where Ray Train calls its hooks: each
    try at starting a group goes ``before_controller_execute_resize_decision`` -> ``before_worker_group_start``
    -> (placement group, workers) -> ``after_worker_group_start``, or fails and comes round again.
    """

    def __init__(self, timeout_s: float, label: str, queue=None, first_s: Optional[float] = None):
        self.label, self.queue = label, queue
        self.clock = StartClock(timeout_s, first_attempt_s() if first_s is None else first_s)
        self._env: Optional[str] = None  # the controller's own ATTEMPT_ENV, put back once a group has read ours
        self._env_read = False

    # Ray Train's hooks

    def before_controller_execute_resize_decision(self, resize_decision) -> None:
        clock, now = self.clock, time.monotonic()
        workers, per_worker = resize_decision.num_workers, dict(resize_decision.resources_per_worker)
        seconds = clock.next_try(now)
        if seconds is None:
            # Raised in a controller hook: Ray Train calls it a controller error it must not retry, and ends
            # the run with it (fit raises ControllerError carrying it; ``startup_timeout_of`` unwraps it).
            raise StartupTimeout(timeout_message(self.label, clock.timeout_s, clock.waited(now), clock.tries,
                                                 workers, per_worker, *_resources(), clock.last_try))
        # Ray Train's WorkerGroup reads its timeout from the environment when it is built, right after this.
        if not self._env_read:
            self._env, self._env_read = os.environ.get(ATTEMPT_ENV), True
        os.environ[ATTEMPT_ENV] = repr(seconds)
        if clock.tries > 1:
            free = describe_free(per_worker, *_resources())
            self._say(f"waiting for the workers ({workers} x {describe_worker(per_worker)}): "
                      f"{clock.waited(now):.0f} s of {KEY}={clock.timeout_s:g} s, try {clock.tries}"
                      + (f" (last try: {clock.last_try})" if clock.last_try else "") + f"; the cluster has {free}")

    def after_controller_state_update(self, previous_state, current_state) -> None:
        error = getattr(current_state, "training_failed_error", None)
        if self.clock.since is not None and error is not None:
            self.clock.last_try = describe_try(error, self.clock.try_s)

    def before_worker_group_start(self, worker_group_context) -> None:
        # The group has read its timeout: put the controller's environment back, which Ray Train hands on to the
        # workers (a value that changed with every try would only make their runtime environment differ).
        if self._env is None:
            os.environ.pop(ATTEMPT_ENV, None)
        else:
            os.environ[ATTEMPT_ENV] = self._env
        try:
            removed = remove_left_behind(ray.get_runtime_context().get_actor_id())
        except Exception as exc:  # an error here would fail the start itself: say so, and try without
            self._say(f"could not look for placement groups left behind: {exc!r}")
            return
        if removed:
            self._say(f"removed {len(removed)} placement group(s) left by stopped Ray Train runs or failed "
                      f"starts, which held resources nothing used: {', '.join(r.describe() for r in removed)}")

    def after_worker_group_start(self, worker_group) -> None:
        if self.clock.since is not None and self.clock.tries > 1:
            self._say(f"workers started after {self.clock.waited(time.monotonic()):.1f} s of waiting "
                      f"({self.clock.tries} tries)")
        self.clock.started()

    def _say(self, text: str) -> None:
        """To the driver's console: through the progress queue when there is one, else the controller's
        stdout, which Ray forwards to the driver."""
        line = f"[{self.label}] {text}"
        if self.queue is not None:
            try:
                self.queue.put_nowait({"_startup": line})
                return
            except Exception:  # the queue's actor is gone (the driver is ending): print instead
                pass
        print(line, flush=True)


def _resources() -> tuple[dict, dict]:
    """What the cluster has free and in all, for the messages (empty if Ray cannot say)."""
    try:
        return ray.available_resources(), ray.cluster_resources()
    except Exception:  # only words depend on it: never fail a start over them
        return {}, {}


def watch_start(timeout_s: float, label: str, callbacks: list, first_s: Optional[float] = None) -> StartupWatch:
    """The watch of one trainer, reporting through the progress queue among ``callbacks`` if there is one."""
    queue = next((c.queue for c in callbacks if isinstance(c, ForwardReports)), None)
    return StartupWatch(timeout_s, label, queue, first_s)


def startup_timeout_of(exc: BaseException) -> Optional[StartupTimeout]:
    """The ``StartupTimeout`` inside the error ``fit`` raised (Ray wraps it in a ``ControllerError``), if any."""
    failure = getattr(exc, "controller_failure", exc)
    return failure if isinstance(failure, StartupTimeout) else None
