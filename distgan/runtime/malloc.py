"""``scaling.tune_malloc``: glibc's heap kept between training steps in a CPU worker process.

A CPU training step allocates and frees the same activation and gradient
buffers every step, many of them megabytes. glibc's defaults give such memory
back to the kernel: blocks above the (adaptive) mmap threshold are unmapped
when freed, and the top of the heap is trimmed once more than twice that
threshold is free. The next step then takes fresh pages, and the kernel faults
in and zeroes every one of them again. Raising both limits keeps the freed
memory in the heap for the next step: +12-18% images/s on the default DCGAN on
a 2-core machine (docs/performance.md), the RSS peak unchanged. What it costs:
memory the run freed stays resident until the worker exits, up to the trim
threshold.

The same tuning that CPU deployment guides get by preloading jemalloc or
tcmalloc, without a second allocator. Process-wide, so only Ray's training
workers apply it, never the process that imports distgan.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
"""Blocks up to this size come from the heap; glibc's ceiling for the setting on 64-bit (HEAP_MAX_SIZE / 2)."""
TRIM_THRESHOLD = 1 << 30
"""Free memory at the heap's top kept before glibc trims it."""


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False (and nothing changed) without glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)  # the symbols this process already links, glibc's mallopt among them
    applied = (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
               and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if applied:
        log.info("glibc heap kept between steps (scaling.tune_malloc): mmap threshold %d MiB, trim threshold "
                 "%d MiB", MMAP_THRESHOLD >> 20, TRIM_THRESHOLD >> 20)
    return applied
