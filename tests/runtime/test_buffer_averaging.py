"""Averaging BatchNorm statistics over ranks only before they are used equals averaging them every step.

The loop relies on it (``Trainer.average_buffers``): a running statistic's update is linear, so the
mean over ranks of each rank's running average is the running average of the mean batch statistics.
"""

import copy

import torch
from torch import nn


def test_averaging_once_equals_averaging_every_step():
    torch.manual_seed(0)
    base = nn.BatchNorm2d(4, momentum=0.1).train()
    batches = [[torch.randn(8, 4, 5, 5) * (r + 1) + r for r in range(2)] for _ in range(30)]

    every = [copy.deepcopy(base) for _ in range(2)]
    for step in batches:
        for bn, x in zip(every, step):
            bn(x)
        for name in ("running_mean", "running_var"):
            mean = (getattr(every[0], name) + getattr(every[1], name)) / 2
            for bn in every:
                getattr(bn, name).copy_(mean)

    once = [copy.deepcopy(base) for _ in range(2)]
    for step in batches:
        for bn, x in zip(once, step):
            bn(x)
    for name in ("running_mean", "running_var"):
        averaged = (getattr(once[0], name) + getattr(once[1], name)) / 2
        assert not torch.allclose(getattr(once[0], name), getattr(once[1], name))  # the ranks did drift apart
        assert torch.allclose(averaged, getattr(every[0], name), rtol=1e-5, atol=1e-6)
