"""Ray Train's torch process group, kept on loopback when every worker runs on this machine.

Ray Train's ``TorchConfig`` sets up the group through torch's ``env://`` rendezvous, whose store (on rank 0)
listens on every interface for as long as the run trains, and whose gloo/NCCL sockets listen on the
address the host name resolves to. When every worker's Ray node address is a loopback one (an embedded
run, always: its Ray is bound to 127.0.0.1; also a test cluster of several local nodes), all ranks are on
this machine, so the group is built on 127.0.0.1 instead (``distgan.core.loopback_group``). Otherwise (a
cluster across machines, where ranks must reach rank 0) Ray Train's own setup runs unchanged, and
[clusters.md](../../docs/clusters.md) lists the ports to keep inside the cluster's network.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from datetime import timedelta
from typing import Optional

import ray.util
from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
from ray.train.torch import TorchConfig
from ray.train.torch.config import _set_torch_distributed_env_vars, _TorchBackend

from distgan.core.loopback_group import init_loopback_group, listen_on_loopback

_listener: Optional[socket.socket] = None
"""Rank 0's store socket, between ``_listen`` and ``_join`` (two calls into the same worker process)."""


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name
        return address == "localhost"


def _listen() -> int:
    global _listener
    _listener = listen_on_loopback()
    return _listener.getsockname()[1]


def _join(backend: str, world_rank: int, world_size: int, port: int, timeout_s: float) -> None:
    global _listener
    listener, _listener = (_listener, None) if world_rank == 0 else (None, None)
    if backend == "nccl" and not {"TORCH_NCCL_ASYNC_ERROR_HANDLING", "TORCH_NCCL_BLOCKING_WAIT"} & set(os.environ):
        os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] = "1"  # as Ray Train sets it: a timed-out collective fails
    init_loopback_group(backend, world_rank, world_size, port, listener, timedelta(seconds=timeout_s))


class _LoopbackTorchBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config: TorchConfig):
        """Ray Train's group setup, but with the store and the collectives on loopback when every worker's
        node address is a loopback one: such nodes can only be on this machine (a Ray bound to loopback is
        unreachable from any other), so every rank reaches 127.0.0.1."""
        addresses = worker_group.execute(ray.util.get_node_ip_address)
        if not all(is_loopback(a) for a in addresses):
            return super().on_start(worker_group, backend_config)
        backend = backend_config.backend or ("nccl" if worker_group.get_resources_per_worker().get("GPU") else "gloo")
        port = worker_group.execute_single(0, _listen)
        if not isinstance(worker_group, V1WorkerGroup):  # as Ray Train's setup: LOCAL_RANK and friends first
            worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(rank, _join, backend=backend, world_rank=rank,
                                                   world_size=len(worker_group), port=port,
                                                   timeout_s=backend_config.timeout_s)
                 for rank in range(len(worker_group))])


class LoopbackTorchConfig(TorchConfig):
    """``TorchConfig`` whose process group listens on loopback only when all workers are on this machine."""

    @property
    def backend_cls(self):
        return _LoopbackTorchBackend
