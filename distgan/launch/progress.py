"""Console progress on the driver.

Ray Train calls ``UserCallback.after_report`` in its controller actor, not in
the driver, so the callback forwards each rank-0 report through a Ray queue
and a driver thread prints it. The queue's actor lives on the driver's node:
anywhere else, losing that node (a spot worker reclaimed under an elastic run)
would take the console with it, and, before the callback forgave it, the run.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import logging
from typing import Optional

import ray
from ray.train import UserCallback
from ray.util.queue import Empty, Queue
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from distgan.tracking.health import HealthMonitor

log = logging.getLogger(__name__)


def driver_queue() -> Queue:
    """A Ray queue whose actor lives on this (the driver's) node and holds no CPU."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})


class ForwardReports(UserCallback):
    """Rank 0's reports into a queue, with the reported checkpoint's path under ``_checkpoint`` (or None)."""

    def __init__(self, queue: Queue):
        self.queue = queue
        self.lost = False

    def after_report(self, run_context, metrics, checkpoint):
        if not metrics or self.lost:
            return
        try:
            self.queue.put_nowait({**metrics[0], "_checkpoint": checkpoint.path if checkpoint else None})
        except Exception as exc:  # an error here would be the controller's and end the run: progress is not worth it
            self.lost = True
            log.warning("console progress stopped: its queue is gone (%s); the run goes on, see metrics.jsonl", exc)


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_line(name: str, record: dict, total: int, elapsed: float, start_step: int) -> str:
    step = record.get("step", 0)
    done = step - start_step
    eta = elapsed / done * (total - step) if done > 0 else float("nan")
    parts = [f"[{name}] step {step}/{total}"]
    if "loss_d" in record:
        parts.append(f"loss_d {record['loss_d']:.3f} loss_g {record['loss_g']:.4g} "
                     f"D(x) {record['d_real']:+.2f} D(G(z)) {record['d_fake']:+.2f}")
    elif "loss_g" in record:  # super-resolution without D (the PSNR stage)
        parts.append(f"loss_g {record['loss_g']:.4g}")
    if "loss_pixel" in record:
        parts.append(f"pixel {record['loss_pixel']:.4g}")
    if "d_acc_real" in record:
        parts.append(f"D acc {record['d_acc_real']:.0%}/{record['d_acc_fake']:.0%}")
    regularizers = [f"{key} {record[key]:.3g}" for key in ("reg_d", "reg_g") if key in record]
    if regularizers:  # each on the steps its lazy interval runs it
        parts.append(" ".join(regularizers))
    if "ada_p" in record:  # ADA's augmentation probability: how hard D is overfitting
        parts.append(f"ada p {record['ada_p']:.3f}")
    if "lr_g" in record:  # a schedule changes them as the run goes (optim.{g,d}.schedule)
        parts.append(f"lr {record['lr_g']:.3g}" + (f"/{record['lr_d']:.3g}" if "lr_d" in record else ""))
    if "images_per_s" in record:
        parts.append(f"{record['images_per_s']:.0f} img/s")
    if "data_wait_s" in record:  # how long the window's steps waited for data (the slowest rank's)
        parts.append(f"data wait {record['data_wait_s']:.2f}s")
    if record.get("data_skipped"):
        parts.append(f"{record['data_skipped']:.0f} unreadable skipped")
    scores = [f"{key} {record[key]:.4g}" for key in ("fid", "kid", "precision", "recall", "class_acc", "psnr",
                                                     "psnr_bicubic", "ssim") if key in record]
    if scores:
        parts.append(" ".join(scores))
    parts.append(f"ETA {format_eta(eta)}")
    if record.get("_checkpoint"):
        parts.append("checkpoint saved")
    return " | ".join(parts)


class ProgressPrinter:
    """Prints forwarded reports until ``stop``; lives in a daemon thread of the driver."""

    def __init__(self, name: str, total_steps: int, out=None):
        self.queue = driver_queue()
        self.callback = ForwardReports(self.queue)
        # sys.stdout as it is now, not as it was at import (a test's captured output, a redirected console).
        self.name, self.total, self.out = name, total_steps, out or sys.stdout
        self.last: Optional[dict] = None
        self.health = HealthMonitor()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ProgressPrinter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()
        self.queue.shutdown()

    def _loop(self) -> None:
        start, start_step = time.monotonic(), None
        while not self._stop.is_set():
            try:
                record = self.queue.get(timeout=0.5)
            except Empty:
                continue
            except Exception:  # the queue actor went away with Ray; nothing left to print
                return
            if "_startup" in record:  # the wait for the workers to start (launch/startup_wait.py), not a step
                print(record["_startup"], file=self.out, flush=True)
                continue
            if start_step is None:
                # Rates are measured from the first report on, so the start-up
                # time of Ray and the engines does not skew the ETA.
                start_step, start = record.get("step", 0), time.monotonic()
            self._print(record, time.monotonic() - start, start_step)

    def _drain(self) -> None:
        try:
            while not self.queue.empty():
                record = self.queue.get_nowait()
                if "_startup" in record:
                    print(record["_startup"], file=self.out, flush=True)
                else:
                    self._print(record, 0.0, 0)
        except Exception:
            pass

    def _print(self, record: dict, elapsed: float, start_step: int) -> None:
        self.last = record
        print(format_line(self.name, record, self.total, elapsed, start_step), file=self.out, flush=True)
        for warning in self.health.observe(record):
            print(f"[{self.name}] WARNING: {warning}", file=self.out, flush=True)
