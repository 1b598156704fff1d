"""Streaming image data: decoded ahead of the step by parallel tasks, in an order fixed by the seed.

The order is not left to the streaming engine. ``ShardedBatches`` decides, as for data held in
memory, which sample fills each place of each global batch (a seeded permutation per epoch, rank r
taking slice r of every global batch), and each rank hands its own sample indices, a chunk of
batches at a time, to a ``Streamer``, which reads and decodes them in parallel and gives them back
in the same order. So everything the in-memory data guarantees holds here too: the order is a
function of ``train.seed``; one worker with batch 2B sees the same global batches as two with B;
and a resumed run continues from the position in its checkpoint, seeing exactly the samples it
would have seen without the interruption. What that costs against an engine free to reorder is one
ordered merge of the decoded blocks (measured in ``benchmarks/streaming.py``).

Nothing is read before the first step but the listing (``distgan.data.catalog``): a file that
cannot be decoded is found when its turn comes, and named; under ``data.skip_corrupt`` the next
readable sample of the listing takes its place (the same one every time, so the order stays a
function of the seed) and it is counted in ``data_skipped``.

The streamer is the launcher's business: Ray tasks or Ray Data under Ray (``distgan.launch.streaming``), a
background thread in a single process (``ThreadStreamer``, for tests and tools).
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol

import numpy as np
import torch

from distgan.config import ConfigError, DataConfig
from distgan.data.catalog import Catalog
from distgan.data.folder import READ_ERRORS, named, unreadable
from distgan.data.images import fit_square
from distgan.data.sampler import ShardedBatches

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]
"""Columns of equal length: what a streamer takes in (rows) and gives back (decoded samples)."""
Transform = Callable[[Batch], Batch]

MIN_CHUNK_BATCHES = 16
"""A rank hands the streamer the indices of ``max(MIN_CHUNK_BATCHES, 4 x data.prefetch_batches)`` batches at
a time, and the next chunk when half of the current one is taken: early enough that the next chunk's first
batches are ready when the current one ends (a step on a GPU is shorter than a batch's decoding on one CPU),
and never more than one and a half chunks ahead. That bound matters for Ray Data, which decodes a whole
chunk as fast as the CPUs allow (it holds back only at its object-store budget), so that ranks whose tasks
share CPUs would wait on the one that ran ahead; the task streamer's window bounds it by itself."""


def chunk_batches(cfg: DataConfig) -> int:
    return max(MIN_CHUNK_BATCHES, 4 * cfg.prefetch_batches)

MAX_SUBSTITUTES = 16
"""Under ``data.skip_corrupt``: how many following samples of the listing are tried in place of an
unreadable one before the run stops (a run of bad files that long is a damaged data set, not noise)."""


class Streamer(Protocol):
    def stream(self, rows: Batch, transform: Transform, batch_size: int) -> Iterator[Batch]:
        """``transform`` applied to ``rows``, yielded in row order ``batch_size`` rows at a time (the last
        batch may be short); the rows are transformed ahead of the consumer, in parallel where it can."""


class ThreadStreamer:
    """One background thread transforms up to ``prefetch`` batches ahead of the consumer (no Ray)."""

    def __init__(self, prefetch: int = 2):
        self.prefetch = prefetch

    def stream(self, rows: Batch, transform: Transform, batch_size: int) -> Iterator[Batch]:
        n = len(next(iter(rows.values())))
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for start in range(0, n, batch_size):
                    if stop.is_set():
                        return
                    ready.put(transform({k: v[start:start + batch_size] for k, v in rows.items()}))
            except BaseException as exc:  # handed to the consumer, which raises it where it waits
                ready.put(exc)

        thread = threading.Thread(target=work, name="distgan-stream", daemon=True)
        thread.start()
        try:
            for _ in range(0, n, batch_size):
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():  # make room for a put the thread waits on, so that it sees ``stop``
                with contextlib.suppress(queue.Empty):
                    ready.get(timeout=0.05)


@dataclass(frozen=True)
class DecodeImages:
    """The decoding task: rows ``{"index"}`` -> ``{"index", "image" uint8 [n, C, R, R], "label", "bad", "error"}``.

    ``bad`` is the index of the unreadable sample a row's image replaces (-1 when none); ``error`` says why
    a row has no image (empty when it has one). A bad file is reported as data rather than raised: an
    exception raised in a Ray task reaches the consumer as Ray's wrapper of it, with the message buried in
    a remote traceback, and the consumer is where the run's error has to be raised anyway. Picklable: it
    runs wherever the streamer sends it.
    """

    catalog: Catalog
    resolution: int
    channels: int
    skip_corrupt: bool

    def __call__(self, rows: Batch) -> Batch:
        index = rows["index"]
        images = np.zeros((len(index), self.channels, self.resolution, self.resolution), dtype=np.uint8)
        used = np.array(index, dtype=np.int64)
        bad = np.full(len(index), -1, dtype=np.int64)
        errors = [""] * len(index)
        for k, i in enumerate(index.tolist()):
            used[k], bad[k], errors[k] = self._decode_into(images[k], i)
        labels = self.catalog.labels[used] if self.catalog.labels is not None else np.zeros(len(index), np.int64)
        return {"index": np.asarray(index), "image": images, "label": labels, "bad": bad,
                "error": np.array(errors, dtype=str)}

    def _decode_into(self, out: np.ndarray, i: int) -> tuple[int, int, str]:
        """Decode sample ``i`` (or, under ``skip_corrupt``, the next readable one) into ``out``:
        (the sample used, the bad one it replaces or -1, the error when there is none to use)."""
        n, describe = len(self.catalog), self.catalog.reader.describe
        for attempt in range(MAX_SUBSTITUTES + 1):
            j = (i + attempt) % n
            try:
                out[...] = fit_square(io.BytesIO(self.catalog.reader.read(j)), self.resolution, self.channels)
                return j, (i if attempt else -1), ""
            except READ_ERRORS as exc:
                if not self.skip_corrupt:
                    why = named(str(exc) or type(exc).__name__, describe(j))  # PIL read a buffer: name the file
                    return j, i, str(unreadable("data.path", self.catalog.location, describe(j), why))
        return i, i, (f"data.path {self.catalog.location!r}: {MAX_SUBSTITUTES + 1} samples in a row from "
                      f"{describe(i)!r} cannot be read; the data set looks damaged (distgan data check names "
                      f"every bad file)")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1], the range every image source gives the models."""
    return images.float().div_(127.5).sub_(1.0)


class BatchStream:
    """A rank's batches decoded ahead by a ``Streamer``, in the order a subclass plans.

    Rows go to the streamer a chunk of ``chunk`` batches at a time (``chunk_batches``), each row identified by its
    ``index`` column; every batch that comes back is checked against the indices due next (a streamer
    that reordered would silently break exact resumes), and a row's ``error`` stops the run with it. Two
    positions are kept: how far rows have been planned, and how far batches have been consumed; the
    checkpoint records the second, so batches decoded ahead but not trained on are made again after a
    resume. Subclasses say what the rows are (``_plan``), which indices are due (``_due``), what the
    consumer gets (``_tensors``) and what the position is (``state_dict``).
    """

    def __init__(self, streamer: Streamer, transform: Transform, batch_size: int, chunk: int, location: str,
                 describe, device: torch.device = torch.device("cpu")):
        self.streamer, self.transform, self.batch_size, self.device = streamer, transform, batch_size, device
        self.chunk = chunk
        self.location, self.describe = location, describe
        self._batches: Optional[Iterator[Batch]] = None
        self._upcoming: Optional[Iterator[Batch]] = None
        self._left = 0
        """Batches of the current chunk not yet taken."""
        self.wait_s = 0.0
        """Seconds this rank waited for decoded batches since the last ``pop_wait``."""
        self.skipped: set[int] = set()
        """Unreadable samples met so far (replaced under ``data.skip_corrupt``)."""

    def _plan(self, batches: int) -> Batch:
        raise NotImplementedError

    def _due(self) -> np.ndarray:
        raise NotImplementedError

    def _tensors(self, batch: Batch):
        raise NotImplementedError

    def start(self) -> None:
        """Begin decoding now, in the background: the first batches come while the loop builds the models and
        engines, instead of at the first step (a task process's first start imports torch: seconds)."""
        if self._batches is None:
            self._batches, self._left = _Primed(self._open_chunk()), self.chunk

    def _open_chunk(self) -> Iterator[Batch]:
        return self.streamer.stream(self._plan(self.chunk), self.transform, self.batch_size)

    def next_batch(self):
        started = time.perf_counter()
        self.start()
        batch = next(self._batches)
        self._left -= 1
        if self._left == self.chunk // 2:  # the next chunk starts decoding while this one's second half trains
            self._upcoming = _Primed(self._open_chunk())
        elif self._left == 0:
            self._batches, self._left, self._upcoming = self._upcoming, self.chunk, None
        self.wait_s += time.perf_counter() - started
        failed = [e for e in batch["error"].tolist() if e]
        if failed:
            raise ConfigError(failed[0])
        expected = self._due()
        if not np.array_equal(batch["index"], expected):
            raise RuntimeError(f"the data streamer returned samples {batch['index'][:4].tolist()}... where "
                               f"{expected[:4].tolist()}... were due")
        for i in batch["bad"][batch["bad"] >= 0].tolist():
            if i not in self.skipped:
                self.skipped.add(i)
                log.warning("data.path %r: skipped unusable %s (data.skip_corrupt=true; %d so far)",
                            self.location, self.describe(i), len(self.skipped))
        return self._tensors(batch)

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        # A batch Ray hands over is a read-only view of its object store; torch wants memory it may write.
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
        if self.device.type != "cuda":
            return tensor
        # Pinned, the copy to the GPU overlaps the step that is still running.
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def pop_wait(self) -> float:
        wait, self.wait_s = self.wait_s, 0.0
        return wait

    def restart(self) -> None:
        """Forget what was decoded ahead (the position was moved: a resume) and start again from the position."""
        self._batches = self._upcoming = None
        self.start()


class _Primed:
    """An iterator whose first item is fetched by a background thread from the moment it is made; later items
    are fetched by the caller (one thread at a time, never both)."""

    def __init__(self, inner: Iterator[Batch]):
        self._inner, self._first, self._error = inner, None, None
        self._thread: Optional[threading.Thread] = threading.Thread(target=self._fetch, name="distgan-prime",
                                                                    daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        try:
            self._first = next(self._inner)
        except BaseException as exc:  # raised where the caller takes the item
            self._error = exc

    def __iter__(self) -> "_Primed":
        return self

    def __next__(self) -> Batch:
        if self._thread is None:
            return next(self._inner)
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise self._error
        first, self._first = self._first, None
        return first


class ImageStream(BatchStream):
    """One rank's stream of training images: ``ShardedBatches``' order over a catalog, decoded by a streamer."""

    def __init__(self, catalog: Catalog, cfg: DataConfig, batch_size: int, rank: int, world: int, seed: int,
                 streamer: Streamer, device: torch.device = torch.device("cpu")):
        super().__init__(streamer, DecodeImages(catalog, cfg.resolution, cfg.channels, cfg.skip_corrupt),
                         batch_size, chunk_batches(cfg), catalog.location, catalog.reader.describe, device)
        self.catalog = catalog
        self._planned = ShardedBatches(len(catalog), batch_size, rank, world, seed, cfg.shuffle)
        self._consumed = ShardedBatches(len(catalog), batch_size, rank, world, seed, cfg.shuffle)
        self.start()

    def _plan(self, batches: int) -> Batch:
        return {"index": torch.cat([self._planned.next_indices() for _ in range(batches)]).numpy()}

    def _due(self) -> np.ndarray:
        return self._consumed.next_indices().numpy()

    def _tensors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Images float32 [B, C, R, R] in [-1, 1] on the device, and their labels."""
        return to_float(self.to_device(batch["image"])), self.to_device(batch["label"])

    def state_dict(self) -> dict[str, int]:
        return self._consumed.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._consumed.load_state_dict(state)
        self._planned.load_state_dict(state)
        self.restart()


def reference_images(catalog: Catalog, cfg: DataConfig, n: int, seed: int, streamer: Streamer) -> tuple[
        torch.Tensor, Optional[torch.Tensor]]:
    """``n`` real images (all, if fewer) chosen by ``seed``, decoded by ``streamer``: what evaluation
    compares with when the data set streams, instead of all of it."""
    n = min(n, len(catalog))
    chosen = np.sort(np.random.default_rng(seed).permutation(len(catalog))[:n])
    decode = DecodeImages(catalog, cfg.resolution, cfg.channels, cfg.skip_corrupt)
    batch = 256
    parts = list(streamer.stream({"index": chosen}, decode, batch))
    x = to_float(torch.from_numpy(np.concatenate([p["image"] for p in parts])))
    labels = torch.from_numpy(np.concatenate([p["label"] for p in parts])) if catalog.classes else None
    return x, labels
