"""A torch process group whose sockets all listen on 127.0.0.1, for ranks that all run on this machine.

torch's own rendezvous (``env://``, ``tcp://``) starts rank 0's TCPStore on every interface (``::``),
whatever ``MASTER_ADDR`` says: that address only tells the other ranks where to connect. The store
authenticates nobody, so while a group lives anyone who can reach the machine could read or write its keys.
torch has no bind address for it; what it has is ``master_listen_fd``: rank 0 binds a socket to 127.0.0.1
itself and hands it to the store. Gloo's and NCCL's own sockets listen on the address the host name
resolves to (often the machine's outward address) unless ``GLOO_SOCKET_IFNAME`` / ``NCCL_SOCKET_IFNAME``
name an interface: here the loopback one. Measured with ``ss -ltnp`` and psutil: an ``env://`` group
listened on ``::``; one built here listens on 127.0.0.1 only (``tests/e2e/test_loopback.py``).

Used by the Ray workers of a run whose workers are all on this machine (``distgan.launch.rendezvous``) and
by the in-process groups of the tests and benchmarks (``init_local_group``).
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Optional

import torch.distributed as dist

LOOPBACK = "127.0.0.1"
INTERFACE_ENVS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
"""Where gloo and NCCL read the interface their sockets listen on (torch's ProcessGroupGloo; NCCL's bootstrap)."""
DEFAULT_TIMEOUT = timedelta(minutes=30)
"""torch's default process-group timeout."""


def loopback_interface() -> str:
    """The loopback interface's name: ``lo`` on Linux, ``lo0`` on macOS."""
    names = {name for _, name in socket.if_nameindex()}
    return next((name for name in ("lo", "lo0") if name in names), "lo")


def keep_collectives_on_loopback() -> None:
    """Gloo and NCCL groups this process creates from now on listen on the loopback interface.

    Overrides a value already set: the caller has established that every rank runs on this machine,
    where loopback always works, and an interface set for a cluster would expose the group.
    """
    name = loopback_interface()
    os.environ.update({env: name for env in INTERFACE_ENVS})


def listen_on_loopback(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (``port`` 0: a free one) for rank 0's store to take over."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's own store socket does
        sock.bind((LOOPBACK, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def loopback_store(rank: int, world_size: int, port: int, listener: Optional[socket.socket] = None,
                   timeout: timedelta = DEFAULT_TIMEOUT) -> dist.TCPStore:
    """The group's store on 127.0.0.1:``port``: rank 0 serves it from ``listener`` (which it takes over),
    the other ranks connect to it. Rank 0 waits, as torch's own rendezvous does, until all have connected."""
    if rank == 0:
        if listener is None:
            raise ValueError("rank 0 serves the store from a socket listen_on_loopback made")
        return dist.TCPStore(LOOPBACK, port, world_size, is_master=True, timeout=timeout,
                             master_listen_fd=listener.detach())
    return dist.TCPStore(LOOPBACK, port, world_size, is_master=False, timeout=timeout)


def init_loopback_group(backend: str, rank: int, world_size: int, port: int,
                        listener: Optional[socket.socket] = None, timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """``dist.init_process_group`` with the store and the collectives' sockets on loopback.

    ``MASTER_ADDR`` and ``MASTER_PORT`` are set to the store, for code that reads them (DeepSpeed's checks).
    """
    keep_collectives_on_loopback()
    os.environ.update(MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port))
    store = loopback_store(rank, world_size, port, listener, timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


def init_local_group(backend: str = "gloo", rank: int = 0, world_size: int = 1, port: int = 0,
                     timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """A process group of ``world_size`` processes on this machine, this one being ``rank``; a no-op when
    this process already has one. The tests' and benchmarks' groups without Ray.

    Rank 0 binds 127.0.0.1:``port`` (0: any free port; then the world must be this process alone). Sets the
    rank variables torch's launchers set (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``).
    """
    if dist.is_initialized():
        return
    if port == 0 and world_size > 1:
        raise ValueError("a group of several processes needs the store's port chosen up front")
    listener = listen_on_loopback(port) if rank == 0 else None
    port = listener.getsockname()[1] if listener is not None else port
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size))
    init_loopback_group(backend, rank, world_size, port, listener, timeout)
