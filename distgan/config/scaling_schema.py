"""``scaling``: how many workers a run has, where they go, and what an elastic run does when that changes.

An elastic run (``scaling.num_workers: [min, max]``) trains at whatever width the cluster gives between min
and max, and Ray Train restarts it narrower when workers or nodes are lost and wider when capacity returns
(the checkpoint is resharded each time). ``scaling.elastic.batch`` says what a width change does to the
batch; ``at_width`` (``distgan.runtime.elastic``) applies it when each attempt starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

from distgan.config.errors import ConfigError, positive


@dataclass
class ElasticConfig:
    batch: Literal["keep_global", "keep_per_worker"] = "keep_global"
    """What a width change does to the batch. ``keep_global`` (default): the global batch stays
    ``train.batch_size`` x max workers, each of w workers taking max/w times ``train.batch_size``, so the
    samples of every step, the learning rates and the EMA's clock are those of a run at full width: training
    dynamics unchanged, at the cost of max/min times the activation memory per worker at the narrowest width
    (which must divide it: checked). ``keep_per_worker``: each worker keeps ``train.batch_size``, the global
    batch shrinks with the width and the learning rates follow ``lr_scaling``."""
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"
    """``keep_per_worker`` only: learning rates times (w/max) (``linear``, Goyal et al. 2017's rule for SGD),
    times sqrt(w/max) (``sqrt``, the usual rule for Adam), or unchanged (``none``), at w of max workers."""
    monitor_interval_s: float = 60.0
    """Seconds between Ray Train's checks for room to grow a running elastic group
    (``elastic_resize_monitor_interval_s``); growing restarts the group from its last checkpoint."""


@dataclass
class ScalingConfig:
    num_workers: Union[int, tuple[int, int]] = 2
    """Ray Train workers, each holding a replica of G and D; ``[min, max]`` for an elastic run, which starts
    with as many as the cluster can give (at least min), continues narrower when workers or nodes are lost
    and grows back toward max (``scaling.elastic``)."""
    use_gpu: Union[bool, Literal["auto"]] = "auto"
    """One GPU per worker; ``auto`` uses GPUs when the cluster has them."""
    cpus_per_worker: int = 1
    """Logical CPUs reserved per worker (also its torch thread count on CPU)."""
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How Ray places the workers on nodes: ``PACK`` fills nodes (fast collectives), ``SPREAD`` puts them on
    as many nodes as it can (each node's spare CPUs then decode streamed data for its own worker); ``STRICT_*``
    refuse to start otherwise."""
    tune_malloc: bool = True
    """CPU workers keep freed memory in glibc's heap between steps instead of returning it to the kernel
    (``distgan.runtime.malloc``): faster steps, the peak stays resident."""
    start_timeout_s: float = 900.0
    """Seconds each start of the workers (the first, every restart) may wait for room in the cluster, taken as soon as
    it frees up, before the run stops saying what it waited for; 15 min lets an autoscaler add nodes. At most a day."""
    elastic: ElasticConfig = field(default_factory=ElasticConfig)
    """What an elastic run (``num_workers: [min, max]``) does when its width changes."""

    @property
    def is_elastic(self) -> bool:
        return isinstance(self.num_workers, tuple)

    @property
    def min_workers(self) -> int:
        return self.num_workers[0] if self.is_elastic else self.num_workers

    @property
    def max_workers(self) -> int:
        return self.num_workers[1] if self.is_elastic else self.num_workers


def check_scaling(s: ScalingConfig, batch_size: int) -> None:
    """Ranges, and that ``keep_global`` can split the global batch evenly at every width it may run at."""
    if s.is_elastic:
        low, high = s.num_workers
        if not 1 <= low < high:
            raise ConfigError(f"scaling.num_workers: expected [min, max] with 1 <= min < max, got {list(s.num_workers)}"
                              f" (a single width is a number)")
    else:
        positive("scaling.num_workers", s.num_workers)
    positive("scaling.cpus_per_worker", s.cpus_per_worker)
    positive("scaling.elastic.monitor_interval_s", s.elastic.monitor_interval_s)
    if s.is_elastic and s.elastic.batch == "keep_global":
        total = batch_size * s.max_workers
        uneven = [w for w in range(s.min_workers, s.max_workers + 1) if total % w]
        if uneven:
            raise ConfigError(f"scaling.elastic.batch: keep_global splits the global batch of {total} (train.batch_size "
                              f"{batch_size} x {s.max_workers} workers) over every width from {s.min_workers} to "
                              f"{s.max_workers}, and {uneven[0]} workers cannot share it evenly; choose a "
                              f"train.batch_size or scaling.num_workers range that divides, or keep_per_worker")
