"""``distgan submit`` and ``distgan jobs``: runs and sweeps as Ray jobs, through the Jobs API.

A submission is validated here first (the config, the address, the token),
so a mistake fails in seconds and nothing is uploaded. The job's runtime
environment carries a staging directory with the resolved ``config.yaml`` as
its working directory and, unless the cluster's image is trusted to hold the
same version (``--package installed``), this distgan package as a py_module.
On the cluster the job runs ``python -m distgan train|tune config.yaml
--address auto --storage STORAGE --name NAME``; the storage must be one
every node reaches (a shared file system, or for a run a URI such as
``s3://bucket/runs``: see ``distgan.persist.storage``), since any node may resume it.

Token authentication (Ray 2.52+) is Ray's own: with ``RAY_AUTH_MODE=token``
the client sends the token from ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``. distgan never writes the token anywhere.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

import yaml

from distgan.config import Config, ConfigError
from distgan.persist import layout

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""This distgan package, uploaded with a job (``--package local``)."""
AGENT_WAIT_S = 60
# Environment a job's processes get: no prompt from W&B, no usage reporting; the key comes from the
# cluster's own environment (a Kubernetes secret, say), never from the submitting machine.
JOB_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}


class SubmitError(RuntimeError):
    """The cluster could not be reached, refused us, or the job failed; the message says which."""


def client(address: str):
    """A Jobs API client for ``address`` (http://HEAD:8265), with errors that say what to check."""
    from ray.job_submission import JobSubmissionClient  # from ray[default]: only a submission needs it

    if not address.startswith(("http://", "https://")):
        raise ConfigError(f"--address {address!r}: the Jobs API address is the dashboard's, "
                          f"e.g. http://HEAD:8265")
    from ray.exceptions import AuthenticationError  # with the client above

    # Ray lets RAY_API_SERVER_ADDRESS / RAY_ADDRESS override the address it is given; the address
    # distgan passes is already the user's choice (the CLI reads those variables only without --address).
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    try:
        return JobSubmissionClient(address)
    except ConnectionError as exc:
        raise SubmitError(f"no Ray dashboard answers at {address} ({_first_line(exc)}); check the address "
                          f"and that the head runs `ray start --head --dashboard-host=...`") from None
    except AuthenticationError as exc:
        raise SubmitError(f"the cluster at {address} refused the token ({_first_line(exc)}); set "
                          f"RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
                          f"or ~/.ray/auth_token (`ray get-auth-token` on the head prints it)") from None
    finally:
        os.environ.update(saved)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def entrypoint(command: str, name: str, storage: str, resume: bool) -> str:
    """The job's command line; a resumed sweep runs with the config it was started with, so it gets none."""
    parts = ["python", "-m", "distgan", command, *([] if resume else ["config.yaml"]), "--address", "auto",
             "--storage", storage, "--name", name, *(["--resume"] if resume else [])]
    return shlex.join(parts)


def runtime_env(staging: Path, package: str, extra_env: dict[str, str]) -> dict:
    env = {"working_dir": str(staging), "env_vars": {**JOB_ENV, **extra_env}}
    if package == "local":
        env["py_modules"] = [str(PACKAGE_DIR)]
    return env


def submit(cfg: Config, address: str, name: str, storage: str, command: str = "train", package: str = "local",
           resume: bool = False) -> str:
    """Submit a run (or sweep) of ``cfg``; returns the submission id."""
    if package not in ("local", "installed"):
        raise ConfigError(f"--package {package!r}: choose local (upload this distgan) or installed "
                          f"(the cluster's image has it)")
    layout.check_name(name)
    if command == "tune" and not cfg.tune.space and not resume:
        raise ConfigError("tune.space: a sweep needs at least one key to search")
    jobs = client(address)  # reachable and accepting our token, before anything is packed
    extra = {k: os.environ[k] for k in ("WANDB_MODE", "WANDB_PROJECT") if k in os.environ}
    with tempfile.TemporaryDirectory(prefix="distgan-submit-") as tmp:
        staging = Path(tmp)
        (staging / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        submission_id = f"distgan-{command}-{name}-{uuid.uuid4().hex[:8]}"
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                return jobs.submit_job(entrypoint=entrypoint(command, name, storage, resume),
                                       runtime_env=runtime_env(staging, package, extra),
                                       submission_id=submission_id,
                                       metadata={"distgan": command, "name": name, "storage": storage})
            except RuntimeError as exc:
                # A head that has just started answers before its job agent is up.
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise SubmitError(f"the cluster at {address} did not take the job: {_first_line(exc)}") from None
                time.sleep(2)


def follow(address: str, submission_id: str, out=None) -> str:
    """Stream the job's logs until it ends; returns its final status (SUCCEEDED, FAILED, STOPPED)."""
    out = out or sys.stdout
    jobs = client(address)

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(submission_id):
            out.write(lines)
            out.flush()

    asyncio.run(tail())
    return str(jobs.get_job_status(submission_id).value)


def list_jobs(address: str) -> list[dict]:
    rows = []
    for job in client(address).list_jobs():
        meta = job.metadata or {}
        if "distgan" not in meta:
            continue
        rows.append({"id": job.submission_id, "kind": meta["distgan"], "name": meta.get("name"),
                     "status": str(job.status.value), "storage": meta.get("storage"),
                     "message": (job.message or "").splitlines()[0] if job.message else ""})
    return rows


def logs(address: str, submission_id: str) -> str:
    return client(address).get_job_logs(submission_id)


def stop(address: str, submission_id: str) -> bool:
    return client(address).stop_job(submission_id)


def default_storage() -> Optional[str]:
    return os.environ.get("DISTGAN_STORAGE")
