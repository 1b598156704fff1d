"""``distgan doctor``: is this machine set up for a run? One line per check: ok, warn or fail, and what to do.

Each check is a small function returning a ``Check``. ``fail`` is kept for what a default ``distgan train``
cannot do without (Python, torch, Ray, DeepSpeed, a writable storage, a reachable ``--address``): the command
then exits 1. What only some runs need, or what only makes a run slower or less visible (no GPU, no
Inception weights, W&B offline, a DeepSpeed op not built yet) is a ``warn``.

Nothing is built or downloaded: DeepSpeed's ops are asked ``is_compatible()`` and looked for among the
pre-built and the JIT-cached ones; Ray is probed with a TCP connection (and, for a Jobs API address, one
request that carries the token), each with a short timeout. torch is imported with this module (the weights
checks ask the modules that load those weights); the CLI reports a torch that cannot be imported itself.
Secrets are never printed: an API key or a Ray token is reported as present or absent.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

import torch
from torch.utils.cpp_extension import get_default_build_root

from distgan.config import Config, ConfigError
from distgan.gan import perceptual
from distgan.launch.submit import SubmitError, client
from distgan.metrics import inception
from distgan.persist.storage import Storage, redacted
from distgan.runtime import engines

OK, WARN, FAIL = "ok", "warn", "fail"
CONNECT_TIMEOUT_S = 3.0
"""How long the Ray probe waits for a connection: a live head answers in milliseconds."""
PYTHON = (3, 11)
"""The Python the package is built for (pyproject.toml's requires-python)."""
FIRST_USE_OPS = {"cpu": ("deepspeed_shm_comm",), "cuda": ("fused_adam",)}
"""DeepSpeed ops a run builds on first use, by accelerator: the shared-memory collectives of CPU workers,
FusedAdam on GPUs (``distgan.runtime.engines`` asks torch's Adam on CPU)."""


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    """``ok``, ``warn`` or ``fail``."""
    detail: str
    advice: str = ""
    """What to do about a warn or fail."""


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] != PYTHON:
        return Check("python", FAIL, f"{version} ({sys.executable})",
                     f"distgan needs Python {PYTHON[0]}.{PYTHON[1]}: make the venv with it (`make setup`)")
    return Check("python", OK, f"{version} ({sys.executable})")


def _version_check(module: str, needed: bool, advice: str) -> Check:
    try:
        found = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 -- any import error (missing, broken build) is the finding
        return Check(module, FAIL if needed else WARN, f"cannot be imported ({type(exc).__name__}: {exc})", advice)
    return Check(module, OK, getattr(found, "__version__", "installed"))


def check_torch() -> Check:
    return _version_check("torch", True, "install the project's dependencies: `make setup` (or pip install -e .)")


def check_ray() -> Check:
    return _version_check("ray", True, "install the project's dependencies: `make setup` (or pip install -e .)")


def check_deepspeed() -> Check:
    return _version_check("deepspeed", True, "install the project's dependencies: `make setup` (or pip install -e .)")


def check_wandb() -> Check:
    return _version_check("wandb", False, "runs then log only to metrics.jsonl; pip install wandb, or set "
                                          "tracking.wandb=false to say so")


def check_gpus() -> Check:
    if not torch.cuda.is_available():
        return Check("gpus", WARN, f"none seen by torch {torch.__version__} (CUDA {torch.version.cuda or 'not built'})",
                     "runs train on CPU workers with gloo; on a GPU machine install a CUDA build of torch and "
                     "check nvidia-smi")
    names = [f"{i}: {torch.cuda.get_device_name(i)} "
             f"({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
             for i in range(torch.cuda.device_count())]
    nccl = ".".join(map(str, torch.cuda.nccl.version())) if torch.distributed.is_nccl_available() else "none"
    return Check("gpus", OK, f"CUDA {torch.version.cuda}, NCCL {nccl}; " + "; ".join(names))


def _jit_built(name: str) -> bool:
    """Whether torch's extension cache holds a build of op ``name`` (what DeepSpeed's JIT load reuses)."""
    # torch.utils.cpp_extension keeps each build in TORCH_EXTENSIONS_DIR (distgan's runs set it to the virtual
    # environment's own folder; torch's default is ~/.cache/torch_extensions/py311_cpu, a folder per Python
    # and accelerator).
    root = Path(engines.op_build_dir() or get_default_build_root())
    return any(root.glob(f"{name}/{name}*.so")) or any(root.glob(f"*/{name}/{name}*.so"))


def check_deepspeed_ops() -> Check:
    try:
        # DeepSpeed's own registry of its ops for this machine's accelerator, as ds_report reads it.
        from deepspeed.accelerator import get_accelerator
        from deepspeed.git_version_info import installed_ops
        from deepspeed.ops.op_builder.all_ops import ALL_OPS
    except Exception as exc:  # noqa: BLE001 -- reported by the deepspeed check; say so here too
        return Check("deepspeed ops", FAIL, f"cannot list them ({type(exc).__name__})", "see the deepspeed line")
    accelerator = get_accelerator().device_name()
    built, buildable, incompatible = [], [], []
    for name, builder in sorted(ALL_OPS.items()):
        if builder is None:
            continue
        if installed_ops.get(name) or _jit_built(builder.name):
            built.append(name)
            continue
        try:
            compatible = builder.is_compatible(verbose=False)
        except Exception:  # noqa: BLE001 -- a builder that cannot even check itself cannot be built here
            compatible = False
        (buildable if compatible else incompatible).append(name)
    detail = (f"accelerator {accelerator}; built: {', '.join(built) or 'none'}; buildable: "
              f"{', '.join(buildable) or 'none'}; incompatible here: {', '.join(incompatible) or 'none'}")
    pending = [op for op in FIRST_USE_OPS.get(accelerator, ()) if op in buildable]
    missing = [op for op in FIRST_USE_OPS.get(accelerator, ()) if op in incompatible]
    if missing:
        return Check("deepspeed ops", FAIL, detail, f"{', '.join(missing)} cannot be built here, and runs on "
                                                    f"{accelerator} need it: see `ds_report`")
    if pending:
        return Check("deepspeed ops", WARN, detail, f"the first run builds {', '.join(pending)} (about a minute, "
                                                    f"once; cached in {engines.op_build_dir() or get_default_build_root()})")
    return Check("deepspeed ops", OK, detail)


def _weights_check(name: str, find: Callable[[Optional[str]], str], configured: Optional[str],
                   needed_for: str) -> Check:
    try:
        path = find(configured)
    except FileNotFoundError as exc:
        return Check(name, WARN, f"not found ({needed_for})", str(exc))
    return Check(name, OK, path)


def check_inception(cfg: Optional[Config]) -> Check:
    return _weights_check("inception weights", inception.weights_path, cfg.eval.inception_weights if cfg else None,
                          "only eval.features=inception needs them; the default evaluates in a domain feature space")


def check_vgg(cfg: Optional[Config]) -> Check:
    return _weights_check("vgg19 weights", perceptual.weights_path, cfg.loss.perceptual.vgg_weights if cfg else None,
                          "only super-resolution with loss.perceptual.weight > 0 needs them")


def check_wandb_mode(cfg: Optional[Config]) -> Check:
    mode = os.environ.get("WANDB_MODE", "")
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    key = "an API key in WANDB_API_KEY" if has_key else "no WANDB_API_KEY"
    if cfg is not None and not cfg.tracking.wandb:
        return Check("w&b", OK, "off (tracking.wandb=false)")
    if mode in ("offline", "dryrun", "disabled") or not has_key and mode != "online":
        why = f"WANDB_MODE={mode}; {key}" if mode else key
        return Check("w&b", WARN, f"offline ({why})",
                     "runs log to wandb/ in the run directory; `wandb sync` uploads them later, or export "
                     "WANDB_API_KEY for live charts")
    return Check("w&b", OK, f"online ({key}" + (f", WANDB_MODE={mode}" if mode else "") + ")")


def _token_note() -> str:
    """Whether a Ray token is configured (never the token itself)."""
    sources = [s for s, present in (("RAY_AUTH_TOKEN", bool(os.environ.get("RAY_AUTH_TOKEN"))),
                                    ("RAY_AUTH_TOKEN_PATH", bool(os.environ.get("RAY_AUTH_TOKEN_PATH"))),
                                    ("~/.ray/auth_token", (Path.home() / ".ray" / "auth_token").is_file()))
               if present]
    mode = os.environ.get("RAY_AUTH_MODE", "")
    return f"token auth {mode or 'not set'}, token {'from ' + sources[0] if sources else 'absent'}"


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    default = {"http": 8265, "https": 8265, "ray": 10001}.get(parts.scheme, 6379)
    if not parts.hostname:
        raise ConfigError(f"--address {address!r}: give HOST:PORT, ray://HOST:10001 or http://HOST:8265")
    return parts.hostname, parts.port or default


def check_ray_address(address: Optional[str]) -> Check:
    if not address:
        return Check("ray cluster", OK, "no --address: distgan train starts an embedded Ray on this machine")
    target = address
    if address == "auto":
        target = os.environ.get("RAY_ADDRESS", "")
        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        if not target and current.is_file():
            target = current.read_text().strip()
        if not target:
            return Check("ray cluster", FAIL, "--address auto, and no Ray cluster was started on this machine",
                         "start one with `ray start --head`, or give the head's address")
    try:
        host, port = _host_port(target)
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ConfigError) as exc:
        return Check("ray cluster", FAIL, f"nothing answers at {redacted(target)} ({exc})",
                     "check the address and that the head runs `ray start --head`; a firewall may block the port")
    if target.startswith(("http://", "https://")):
        # The Jobs API answers with a version check that carries the token: the one probe that proves it.
        try:
            client(target)
        except (SubmitError, ConfigError) as exc:
            return Check("ray cluster", FAIL, f"{redacted(target)}: {exc}", "see the message")
    return Check("ray cluster", OK, f"{redacted(target)} answers ({_token_note()})")


def check_storage(storage: Optional[str], cfg: Optional[Config]) -> Check:
    given = storage or (cfg.train.storage if cfg else None) or "runs"
    probe = f".distgan-doctor-{uuid.uuid4().hex[:8]}"
    try:
        parsed = Storage.parse(given)
        root = parsed.as_dir()
        if not parsed.remote and not Path(parsed.root).is_dir():
            # Not made yet (train makes it): probe the nearest directory that is, rather than leave one behind.
            existing = next(p for p in Path(parsed.root).parents if p.exists())
            if not existing.is_dir():
                raise NotADirectoryError(f"{existing} is a file")
            root = Storage.parse(existing).as_dir()
        root.write_text(probe, "probe\n")
        readable = root.read_text(probe) == "probe\n"
        root.delete(probe)
    except (OSError, ConfigError) as exc:
        return Check("storage", FAIL, f"{redacted(given)} is not writable ({type(exc).__name__}: {exc})",
                     "give --storage a directory (or bucket) this user can write, or fix its permissions")
    if not readable:
        return Check("storage", FAIL, f"{redacted(given)}: a file written there read back different",
                     "check the storage")
    if root.path() != parsed.root:
        return Check("storage", OK, f"{parsed.display()} does not exist yet; train makes it in {root.path()}, "
                                    f"which is writable")
    return Check("storage", OK, f"{parsed.display()} is writable")


def run_checks(address: Optional[str] = None, storage: Optional[str] = None,
               cfg: Optional[Config] = None) -> list[Check]:
    """Every check, in the order a user fixes things: the software, the hardware, then what a run reaches."""
    checks = [check_python(), check_torch(), check_ray(), check_deepspeed(), check_wandb()]
    if checks[1].status == OK:
        checks.append(check_gpus())
    if checks[3].status == OK:
        checks.append(check_deepspeed_ops())
    checks += [check_inception(cfg), check_vgg(cfg), check_wandb_mode(cfg), check_ray_address(address),
               check_storage(storage, cfg)]
    return checks


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{c.status:<4}  {c.name:<{width}}  {c.detail}" + (f"\n{'':<{width + 8}}-> {c.advice}"
                                                              if c.advice and c.status != OK else "")
             for c in checks]
    failed = [c.name for c in checks if c.status == FAIL]
    lines.append(f"{len(failed)} failed ({', '.join(failed)}): a default run cannot start" if failed
                 else "ready: a default run has what it needs")
    return "\n".join(lines)
