"""Weights & Biases on rank 0: offline unless a key is configured, one run id per run.

The run id is chosen by the driver and stored in the run directory, so a
resumed run (after a worker or driver restart) appends to the same W&B run.
No API key ever enters the config or the logged run config: W&B reads it
from its own places (``WANDB_API_KEY``, ``~/.netrc``), and on clusters from
the file named by ``WANDB_API_KEY_FILE`` (a mounted Kubernetes secret, say),
which distgan reads into this process's environment only.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Optional, Sequence

from distgan.config import TrackingConfig

log = logging.getLogger(__name__)

FLUSH_S = 1.0
"""How often W&B's service writes what it has into the run's ``.wandb`` file. W&B's default (15 s) keeps a
short attempt's whole log in memory: a worker killed by Ray (a trial Tune stops, a lost node) then leaves
an empty offline log (measured: 20 rows logged, the client SIGKILLed 1 s later, 0 records on disk; with a
1 s interval all 20). A flush writes only what is new, so the total written is the same."""


def load_key_file() -> None:
    """``WANDB_API_KEY_FILE`` -> ``WANDB_API_KEY`` for this process, unless a key is already set."""
    path = os.environ.get("WANDB_API_KEY_FILE")
    if path and not os.environ.get("WANDB_API_KEY") and Path(path).expanduser().is_file():
        key = Path(path).expanduser().read_text().strip()
        if key:
            os.environ["WANDB_API_KEY"] = key


def has_api_key() -> bool:
    load_key_file()
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(cfg: TrackingConfig) -> str:
    """The W&B mode to use: ``WANDB_MODE`` in the environment wins, then the config."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    if cfg.mode == "auto":
        return "online" if has_api_key() else "offline"
    return cfg.mode


def flush_setting(settings_type) -> dict:
    """``FLUSH_S`` as W&B's setting, where this W&B has it: its settings refuse unknown keys, and the pinned
    version's name for it is private (``x_``), so an older W&B (pyproject allows 0.19 on) flushes at its own
    pace rather than failing every run."""
    name = "x_transaction_log_flush_interval"
    return {name: FLUSH_S} if name in getattr(settings_type, "model_fields", {}) else {}


class WandbLogger:
    """``group``: the sweep a trial belongs to (its job type is then ``sweep-trial``, else ``train``); ``tags``:
    what runs are filtered by (family, task, sweep); ``summaries``: score -> ``min`` or ``max``, the value
    a run's summary keeps (its best, not its last); ``system_stats``: W&B's system charts (on for GPU runs,
    where utilisation and memory are worth a chart; off on CPU, where the sampling thread costs a core)."""

    def __init__(self, cfg: TrackingConfig, run_dir: Path, run_id: str, name: str, config: dict,
                 group: Optional[str] = None, tags: Sequence[str] = (), summaries: Optional[dict] = None,
                 system_stats: bool = False):
        import wandb  # slow to import, and only rank 0 logs

        load_key_file()
        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project, entity=cfg.entity, id=run_id, name=name, group=group, resume="allow",
            job_type="sweep-trial" if group else "train", tags=list(dict.fromkeys(tags)),
            dir=str(run_dir), mode=resolve_mode(cfg), config=config,
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=not system_stats,
                                    **flush_setting(wandb.Settings)),
        )
        # Steps go in as a metric, not W&B's own step counter: after a restart
        # from a checkpoint the same steps are logged again, and W&B drops
        # writes whose internal step goes backwards.
        self.run.define_metric("step")
        for score, direction in (summaries or {}).items():
            self.run.define_metric(score, step_metric="step", summary=direction)
        self.run.define_metric("*", step_metric="step")

    def log(self, metrics: dict, images: Optional[dict] = None) -> None:
        payload = dict(metrics)
        for key, img in (images or {}).items():
            payload[key] = self._wandb.Image(img)
        self.run.log(payload)

    def finish(self) -> None:
        self.run.finish()

    def finish_failed(self) -> None:
        """The attempt ended early, its error on the way up: W&B marks the run failed and closes its log
        whole. Never raises: the attempt's own error is the one to report."""
        try:
            self.run.finish(exit_code=1)
        except Exception as exc:  # noqa: BLE001  (whatever W&B's service says, the attempt's error stands)
            log.warning("could not close the W&B run: %s", exc)
