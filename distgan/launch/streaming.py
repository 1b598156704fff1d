"""Streamers of ``distgan.data.stream`` under Ray: samples decoded by tasks on any node, ahead of the step.

Each rank hands over its own sample indices in the order ``ShardedBatches`` fixed, a chunk at a time,
and gets the decoded batches back in that order (``BatchStream`` checks every batch's indices, which the
exact-resume guarantee rests on). Two engines do the decoding, picked by ``data.streamer``:

* ``RayTaskStreamer`` (``tasks``, the default): one Ray task per batch, ``data.prefetch_batches`` of them in
  flight per rank, spread over the cluster's free CPUs (CPU-only nodes included), collected in order.
  The window is the back-pressure: a rank never has more than that many batches decoded or decoding.
* ``RayDataStreamer`` (``ray_data``): each chunk becomes a Ray Data set whose ``map_batches`` tasks decode it
  (``preserve_order``), iterated with Ray Data's prefetching.

Why tasks by default: for an index-driven stream in a fixed order there is one stage and nothing to
reorder, and measured on the same folder (``benchmarks/streaming.py --engines``) Ray Data's executor
costs more CPU per image and decodes at about half the rate of the task window (docs/performance.md).

Ray Train's own ``get_dataset_shard`` is not used for training data: its ``streaming_split`` deals
blocks to whichever rank asks first, so which sample a rank gets would depend on timing, one worker
with batch 2B would not see what two with B see, and a restarted group would begin the data set
again rather than where its checkpoint stopped (see docs/data.md).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Iterator

import pyarrow as pa
import ray
import ray.data

from distgan.config import DataConfig
from distgan.data.stream import Batch, Streamer, Transform

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
        n = len(next(iter(rows.values())))
        rows_per_block = batch_size * self.batches_per_task
        blocks = [pa.table({k: v[start:start + rows_per_block] for k, v in rows.items()})
                  for start in range(0, n, rows_per_block)]
        source = ray.data.from_arrow(blocks)
        # The data set's own copy of the process's DataContext (``from_arrow`` copies it): the settings stay with
        # this stream, not with every data set the worker's process builds afterwards.
        source.context.execution_options.preserve_order = True
        source.context.enable_progress_bars = False
        dataset = source.map_batches(transform, batch_size=rows_per_block, batch_format="numpy",
                                     num_cpus=self.cpus_per_task, zero_copy_batch=True)
        batches = dataset.iter_batches(batch_size=batch_size, batch_format="numpy",
                                       prefetch_batches=self.prefetch_batches)
        yield from batches


def _apply(transform: Transform, rows: Batch) -> Batch:
    return transform(rows)


class RayTaskStreamer:
    """``distgan.data.stream.Streamer`` over plain Ray tasks: a window of ``prefetch_batches`` tasks in flight,
    one batch each, collected in submission order."""

    def __init__(self, prefetch_batches: int, cpus_per_task: float):
        self.prefetch_batches = max(1, prefetch_batches)
        self._remote = ray.remote(_apply)
        # SPREAD, as Ray Data schedules its tasks: decoding goes to every node's spare CPUs, not only the worker's.
        self._options = {"num_cpus": cpus_per_task, "scheduling_strategy": "SPREAD"}
        self._shipped: tuple[Transform, ray.ObjectRef] | None = None

    def _transform_ref(self, transform: Transform) -> "ray.ObjectRef":
        """The transform in the object store, put once per transform: it carries the catalog, which lists
        every sample (megabytes for millions of files), and goes with every task."""
        if self._shipped is None or self._shipped[0] is not transform:
            self._shipped = (transform, ray.put(transform))
        return self._shipped[1]

    def stream(self, rows: Batch, transform: Transform, batch_size: int) -> Iterator[Batch]:
        shipped = self._transform_ref(transform)
        name = type(transform).__name__
        n = len(next(iter(rows.values())))
        starts = iter(range(0, n, batch_size))
        in_flight: deque = deque()

        def submit(start: int) -> None:
            part = {k: v[start:start + batch_size] for k, v in rows.items()}
            in_flight.append(self._remote.options(name=name, **self._options).remote(shipped, part))

        for start in starts:
            submit(start)
            if len(in_flight) == self.prefetch_batches:
                break
        while in_flight:
            head = in_flight.popleft()
            for start in starts:  # keep the window full while this batch is being collected
                submit(start)
                break
            yield ray.get(head)


STREAMERS = {"tasks": RayTaskStreamer, "ray_data": RayDataStreamer}
"""``data.streamer`` -> its streamer class (keys checked by the config's schema)."""


def make_streamer(data: DataConfig) -> Streamer:
    return STREAMERS[data.streamer](data.prefetch_batches, data.cpus_per_task)
