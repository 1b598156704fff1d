"""``init_local_group`` keeps a process group on 127.0.0.1: its store and gloo's listeners, in a world of two
processes, even with ``GLOO_SOCKET_IFNAME`` naming an outward interface. The control, in the same processes
first: torch's own ``env://`` rendezvous, whose store listens on every interface."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys

import psutil

from ports import free_port

SCRIPT = """
import json, os, sys
import psutil, torch, torch.distributed as dist
from distgan.core.loopback_group import init_local_group
rank, world, env_port, port = (int(a) for a in sys.argv[1:])

def group_up():
    t = torch.ones(1)
    dist.all_reduce(t, group=dist.new_group(list(range(world))))  # a second group: a second gloo listener
    listening = [(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    dist.barrier()  # no rank closes its sockets before every rank has looked
    return {"sum": t.item(), "listening": listening}

# torch's own rendezvous, as Ray Train and the benchmarks used it
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(env_port), RANK=str(rank), WORLD_SIZE=str(world))
dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
control = group_up()
dist.destroy_process_group()
init_local_group("gloo", rank, world, port)
print("RESULT " + json.dumps({"control": control, "loopback": group_up(), "ifname": os.environ["GLOO_SOCKET_IFNAME"]}))
"""


def outward_interface() -> str | None:
    """An interface with a non-loopback IPv4 address (gloo listens there when told to), if there is one."""
    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback for a in addrs):
            return name
    return None


def exposed(listening) -> list:
    return [(ip, port) for ip, port in listening if not ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback]


def test_a_local_group_of_two_listens_on_loopback_only_where_torchs_own_listens_everywhere():
    env_port, port, env = free_port(), free_port(), dict(os.environ)
    if outward_interface():
        env["GLOO_SOCKET_IFNAME"] = outward_interface()  # what a cluster's environment might carry
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(rank), "2", str(env_port), str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    ranks = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, err[-3000:]
        ranks.append(json.loads(lines[-1][len("RESULT "):]))

    # The control (torch 2.13): the env:// store ignores MASTER_ADDR when it binds, and listens on ``::``.
    control = ranks[0]["control"]
    assert control["sum"] == 2.0
    assert any(ip in ("::", "0.0.0.0") and p == env_port for ip, p in control["listening"]), control
    for rank in ranks:
        group = rank["loopback"]
        assert group["sum"] == 2.0  # a working group
        assert len(group["listening"]) >= 2, group  # gloo listens for each group
        assert not exposed(group["listening"]), group
        assert rank["ifname"] in ("lo", "lo0")  # an outward interface in the environment was overridden
    assert ["127.0.0.1", port] in ranks[0]["loopback"]["listening"]  # rank 0 serves the store, on loopback
