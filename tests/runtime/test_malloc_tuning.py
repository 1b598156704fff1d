"""``scaling.tune_malloc``: a worker process keeps freed buffers in glibc's heap instead of faulting in fresh
pages every step. Each case runs in its own interpreter, since the setting is process-wide."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from distgan import load_config

STEPS = """
import ctypes, json, resource, sys
from distgan.runtime.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
MiB = 1 << 20

def step():
    # A training step's pattern: megabyte buffers alive together, written, all freed at the end
    # (glibc directly: no Python or torch allocation interleaves, so the heap's layout is the same each run).
    blocks = [libc.malloc(4 * MiB) for _ in range(6)]
    for block in blocks:
        ctypes.memset(block, 1, 4 * MiB)
    for block in reversed(blocks):
        libc.free(block)

# Freeing one 6 MiB block raises glibc's adaptive mmap threshold past the 4 MiB buffers: from here on they
# come from the heap, as a long run's do, and are trimmed off its top when freed.
libc.free(libc.malloc(6 * MiB))
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"applied": applied,
                  "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20}))
"""


def page_faults_per_step(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    system, tuned = page_faults_per_step("system"), page_faults_per_step("tuned")
    assert tuned["applied"] is True
    # 24 MiB are 6,144 pages: glibc's defaults hand them back and fault them in again each step.
    assert system["faults"] > 3000, system
    assert tuned["faults"] < system["faults"] / 10, (system, tuned)


def test_the_key_defaults_on_and_can_be_turned_off():
    assert load_config(None, ()).scaling.tune_malloc is True
    assert load_config(None, ("scaling.tune_malloc=false",)).scaling.tune_malloc is False
