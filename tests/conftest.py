"""Shared fixtures: one local Ray for the end-to-end tests, one in-process gloo group for engine tests."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
import torch

from distgan.launch.loopback import keep_embedded_ray_on_loopback

# A test past its timeout fails alone, with its stacks, and what its xdist worker left running is killed.
pytest_plugins = ["processes"]

# W&B never reaches the network from tests; Ray never reports usage.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Ray Train's controller looks at its workers every 2 s by default, and a run's start, finish and each
# restart wait for such a look: a run that trains for a second took 13.4 s on the shared 2-core machine,
# 9.0 s at 0.2 s (medians of 6). The tests run dozens; a long run never notices either. Every Ray the tests
# start, and every `distgan` process they run, inherits it.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
torch.set_num_threads(1)
# One cache of feature networks and real-data features for the session (Ray workers inherit it), not ~/.cache.
if "DISTGAN_CACHE_DIR" not in os.environ:
    os.environ["DISTGAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="distgan-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DISTGAN_CACHE_DIR"], True)
# Before anything imports ray: the test cluster's servers listen on 127.0.0.1 only.
keep_embedded_ray_on_loopback(None)
# The S3 tests talk to a local S3 server (``s3_storage``), never to AWS: fixed fake credentials for it, and no
# probe of the EC2 metadata service. Set before Ray starts, so its workers (which read the store) have them.
os.environ.update(AWS_ACCESS_KEY_ID="distgan-test", AWS_SECRET_ACCESS_KEY="distgan-test",
                  AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
# Staging copies of runs under a URI go to a directory of this session, removed at exit.
if "DISTGAN_STAGING_DIR" not in os.environ:
    os.environ["DISTGAN_STAGING_DIR"] = tempfile.mkdtemp(prefix="distgan-test-staging-")
    atexit.register(shutil.rmtree, os.environ["DISTGAN_STAGING_DIR"], True)


# torch's own, before any test builds a DeepSpeed engine (see restore_torch_linear).
_TORCH_LINEAR = torch.nn.functional.linear


@pytest.fixture(autouse=True)
def restore_torch_linear():
    """Give every test torch's own ``torch.nn.functional.linear`` back. A ZeRO-3 engine replaces it for the
    rest of its process with DeepSpeed's memory-efficient version (DeepSpeed: "This will persist unless
    manually reset"): what a training worker wants, but the tests share processes, and a later test that
    traces a model (TorchScript export) fails on its Python autograd function."""
    yield
    if torch.nn.functional.linear is not _TORCH_LINEAR:
        torch.nn.functional.linear = _TORCH_LINEAR


@pytest.fixture(scope="session")
def process_group():
    """A world-size-1 gloo group in this process, so DeepSpeed engines can be built without Ray."""
    from distgan.core.loopback_group import init_local_group

    # Its store and gloo sockets listen on 127.0.0.1 (an ``env://`` group's store listens on every interface).
    init_local_group("gloo")
    yield
    # Left up: other session-scoped users may follow; the process exit tears it down.


@pytest.fixture(scope="session")
def local_ray():
    """One embedded Ray for every end-to-end test: 4 logical CPUs on loopback (2 workers + headroom)."""
    import ray

    # Ray workers unpickle test-defined worker functions by module name.
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [here, os.path.join(here, "e2e"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    from distgan.launch import preemption

    # The dashboard serves the state API that Ray Train's placement-group cleaner polls. The runtime env is
    # the one distgan's own Ray gets: a SIGTERM to a worker is a preemption notice.
    ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
             logging_level="WARNING", log_to_driver=True, runtime_env=preemption.runtime_env())
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto's, listening on 127.0.0.1): the object store that cannot exist here.

    Yields its endpoint ``127.0.0.1:PORT``; stopped at the end of the session.
    """
    from moto.server import ThreadedMotoServer

    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture
def s3_storage(s3_server, request):
    """``s3://BUCKET/runs?...`` on the local server, in a fresh bucket per test (named after it)."""
    import re

    import boto3

    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-") or "distgan"
    boto3.client("s3", endpoint_url=f"http://{s3_server}").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/runs?endpoint_override={s3_server}&scheme=http"
