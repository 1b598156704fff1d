"""``worker_memory``: the process's resident size (and GPU memory on CUDA) in MB, for the logged metrics."""

from __future__ import annotations

import mmap

import psutil
import pytest
import torch

from distgan.tracking.memory import worker_memory


def test_cpu_reports_this_process_rss_only():
    before = worker_memory("cpu")
    assert set(before) == {"rss_mb"}
    # 64 MB of fresh pages, touched: resident. An anonymous map, not a tensor: a heap that earlier code in this
    # process grew and freed (glibc keeps it, see runtime/malloc.py) would serve a tensor without new pages.
    block = mmap.mmap(-1, 64 * 2**20)
    block.write(b"\1" * len(block))
    after = worker_memory(torch.device("cpu"))
    assert after["rss_mb"] - before["rss_mb"] > 32
    assert abs(after["rss_mb"] - psutil.Process().memory_info().rss / 2**20) < 16
    block.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_adds_allocated_and_peak_gpu_memory():
    x = torch.ones(2**20, device="cuda")
    values = worker_memory("cuda:0")
    assert values["gpu_mem_mb"] >= 4 and values["gpu_max_mem_mb"] >= values["gpu_mem_mb"]
    del x
