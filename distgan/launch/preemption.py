"""SIGTERM to a Ray Train worker becomes a preemption notice for its training loop, not an instant exit.

Ray's worker processes exit on SIGTERM: the task loop of every worker installs a handler that raises
``SystemExit`` (``ray._private.worker.Worker.main_loop``), so a spot VM's or Kubernetes' warning would kill
the worker mid-step and the run would lose every step since its last checkpoint. The loop runs in a thread
of that process, and only the main thread may set a signal handler, after Ray's is set. So this module is a
``worker_process_setup_hook`` (it runs in the main thread of every worker process of the job, before the
task loop starts) that wraps the handler Ray is about to install: while a training loop of the process
watches for notices (``distgan.runtime.preemption``), a SIGTERM only tells it; otherwise, or on a second
SIGTERM, Ray's own handler runs as before. This reaches into one private Ray function, at the version
pinned in constraints.txt; tests/e2e/test_preemption.py fails if that function changes.
"""

from __future__ import annotations

import logging

import ray._private.utils as ray_utils  # the one private Ray function this module wraps (see above)

from distgan.runtime import preemption

log = logging.getLogger(__name__)

SETUP_HOOK = f"{__name__}.install"
"""The ``worker_process_setup_hook`` value of the job's runtime env."""


def runtime_env() -> dict:
    """The job-level runtime env that makes every worker process of the job take the hook."""
    return {"worker_process_setup_hook": SETUP_HOOK}


def install() -> None:
    """Make the SIGTERM handler Ray installs next tell a watching training loop first."""
    if getattr(ray_utils.set_sigterm_handler, "distgan_wrapped", False):
        return
    ray_set = ray_utils.set_sigterm_handler

    def set_handler(ray_handler):
        def handler(signum, frame):
            if preemption.noticed() or not preemption.notify():
                ray_handler(signum, frame)  # a second notice, or nothing trains here: exit as Ray would
                return
            log.warning("SIGTERM: checkpointing at the next step, then stopping this attempt")

        ray_set(handler)

    set_handler.distgan_wrapped = True
    ray_utils.set_sigterm_handler = set_handler
