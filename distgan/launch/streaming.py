"""Ray Data as the streamer of ``distgan.data.stream``: samples decoded by tasks on any node, ahead of the step.

Each rank hands over its own sample indices in the order ``ShardedBatches`` fixed, a chunk at a
time; they become blocks of a Ray Data set whose ``map_batches`` tasks read and decode them wherever
the cluster has a free CPU (CPU-only nodes included), and the rank iterates the result with
prefetching. ``preserve_order`` makes Ray Data hand the decoded blocks back in the order given,
which the exact-resume guarantee rests on (``ImageStream`` checks every batch's indices).

Ray Train's own ``get_dataset_shard`` is not used for training data: its ``streaming_split`` deals
blocks to whichever rank asks first, so which sample a rank gets would depend on timing, one worker
with batch 2B would not see what two with B see, and a restarted group would begin the data set
again rather than where its checkpoint stopped (see docs/data.md).
"""

from __future__ import annotations

import logging
from typing import Iterator

import pyarrow as pa
import ray
import ray.data

from distgan.data.stream import Batch, Transform

QUIET_LOGGERS = ("ray.data._internal.progress", "ray.data._internal.execution.streaming_executor")
"""Ray Data's per-execution chatter (a line per chunk from every rank); its warnings of substance come
from other loggers."""


class RayDataStreamer:
    """``distgan.data.stream.Streamer`` over Ray Data."""

    def __init__(self, prefetch_batches: int, cpus_per_task: float, batches_per_task: int = 1):
        self.prefetch_batches, self.cpus_per_task, self.batches_per_task = (prefetch_batches, cpus_per_task,
                                                                            batches_per_task)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)

    def stream(self, rows: Batch, transform: Transform, batch_size: int) -> Iterator[Batch]:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        n = len(next(iter(rows.values())))
        rows_per_block = batch_size * self.batches_per_task
        blocks = [pa.table({k: v[start:start + rows_per_block] for k, v in rows.items()})
                  for start in range(0, n, rows_per_block)]
        dataset = ray.data.from_arrow(blocks).map_batches(
            transform, batch_size=rows_per_block, batch_format="numpy", num_cpus=self.cpus_per_task,
            zero_copy_batch=True)
        batches = dataset.iter_batches(batch_size=batch_size, batch_format="numpy",
                                       prefetch_batches=self.prefetch_batches)
        yield from batches
