"""The embedded Ray the tests (and ``distgan train`` without --address) start listens on loopback only."""

from __future__ import annotations

import ipaddress
import os

import psutil
import pytest

pytestmark = pytest.mark.ray


def test_every_ray_server_listens_on_loopback(local_ray):
    # ray.init spawned GCS, raylet, dashboard and workers as descendants of this process.
    pids = {p.pid for p in psutil.Process(os.getpid()).children(recursive=True)} | {os.getpid()}
    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert len(listening) >= 3, "expected at least the GCS, raylet and a worker to be listening"
    exposed = [(psutil.Process(c.pid).name(), c.laddr.ip, c.laddr.port) for c in listening
               if not ipaddress.ip_address(c.laddr.ip.removeprefix("::ffff:")).is_loopback]
    assert not exposed, f"Ray servers reachable from outside this machine: {exposed}"
