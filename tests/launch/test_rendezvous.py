"""The launcher's process group: built on loopback when every worker's node is a loopback address (an embedded
run), left to Ray Train's own ``env://`` setup on a cluster, where ranks on other machines must connect.

Ray is not started: a stand-in worker group records what the backend asks the workers to run. That the
loopback group really listens on 127.0.0.1 only is ``tests/e2e/test_loopback.py``'s."""

from __future__ import annotations

import pytest
import ray
from ray.train.torch.config import _TorchBackend

from distgan import load_config
from distgan.launch import rendezvous
from distgan.launch.rendezvous import LoopbackTorchConfig, is_loopback
from distgan.launch.train import build_trainer
from distgan.persist import rundir


class StandInGroup:
    """What ``on_start`` uses of Ray Train's worker group; each call is recorded, none runs."""

    def __init__(self, addresses: list[str]):
        self.addresses, self.calls = addresses, []

    def execute(self, fn, *args, **kwargs):
        if fn is ray.util.get_node_ip_address:
            return list(self.addresses)
        self.calls.append((fn.__name__, None, kwargs))
        return [None] * len(self.addresses)

    def execute_single(self, rank, fn, *args, **kwargs):
        self.calls.append((fn.__name__, rank, kwargs))
        return 43210 if fn is rendezvous._listen else None

    execute_single_async = execute_single

    def get_resources_per_worker(self) -> dict:
        return {"CPU": 1}

    def __len__(self) -> int:
        return len(self.addresses)


@pytest.fixture
def ray_trains_setup(monkeypatch):
    """Replaces Ray Train's own setup (and ``ray.get``) with recorders."""
    used = []
    monkeypatch.setattr(_TorchBackend, "on_start", lambda self, group, config: used.append(group))
    monkeypatch.setattr(rendezvous.ray, "get", lambda refs: refs)
    return used


@pytest.mark.parametrize("addresses", [["10.0.0.5", "10.0.0.6"], ["127.0.0.1", "10.0.0.6"], ["192.0.2.2"]])
def test_a_cluster_keeps_ray_trains_own_setup(addresses, ray_trains_setup):
    group = StandInGroup(addresses)
    rendezvous._LoopbackTorchBackend().on_start(group, LoopbackTorchConfig(backend="gloo"))
    assert ray_trains_setup == [group] and group.calls == []  # nothing bound on loopback for a remote rank


def test_workers_all_on_loopback_join_a_loopback_group(ray_trains_setup):
    group = StandInGroup(["127.0.0.1", "127.0.0.1"])
    rendezvous._LoopbackTorchBackend().on_start(group, LoopbackTorchConfig(backend="gloo", timeout_s=42))
    assert ray_trains_setup == []
    assert group.calls[0] == ("_listen", 0, {})  # rank 0 binds the store's socket first
    assert group.calls[1][0] == "_set_torch_distributed_env_vars"  # LOCAL_RANK and friends, as Ray Train sets
    assert group.calls[2:] == [("_join", rank, {"backend": "gloo", "world_rank": rank, "world_size": 2,
                                                "port": 43210, "timeout_s": 42}) for rank in (0, 1)]


@pytest.mark.parametrize("address, loopback", [("127.0.0.1", True), ("127.0.0.3", True), ("::1", True),
                                               ("localhost", True), ("10.1.2.3", False), ("fd00::2", False),
                                               ("head.example", False)])
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_build_trainer_uses_it(tmp_path):
    cfg = load_config(None, ("train.collective_timeout_s=30",))
    trainer = build_trainer(cfg, rundir.prepare(tmp_path, "run", cfg), tmp_path, use_gpu=False, callbacks=[])
    assert isinstance(trainer.backend_config, LoopbackTorchConfig)
    assert trainer.backend_config.backend == "gloo" and trainer.backend_config.timeout_s == 30
