"""benchmarks/memory.py measures what it claims: ZeRO's partitions per worker, Adam's state, saved activations."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "memory.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("memory_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


memory = load_benchmark()


def test_zero_stages_partition_state_per_worker(tmp_path):
    """Real engines in 1 and 2 processes: ZeRO-2 halves Adam's state per worker, ZeRO-3 also the parameters.

    ZeRO-3 runs with a persistence threshold of 0: by default DeepSpeed keeps every parameter under 1e5
    elements whole on every rank (on top of its partition), which for these small networks is most of them;
    the default's numbers are what ``python benchmarks/memory.py`` reports.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--quick", "--models", "dcgan", "--stages", "0,2,3",
                           "--workers", "1:2,2", "--persistence-threshold", "0"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {(r["net"], r["stage"], r["workers"]): r for r in result["rows"]}
    assert len(rows) == 2 * (3 + 1)  # one worker at ZeRO-2 only: what it is compared with below
    for net in ("g", "d"):
        zero0 = rows[(net, 0, 2)]
        # Adam, fp32: exp_avg and exp_avg_sq, 4 bytes each per parameter (plus a 4-byte step per tensor).
        assert zero0["optimizer"] == pytest.approx(2 * 4 * zero0["n_params"], rel=0.01)
        assert zero0["params"] == pytest.approx(4 * zero0["n_params"], rel=0.01)
        assert 0.4 <= rows[(net, 2, 2)]["optimizer"] / zero0["optimizer"] <= 0.6
        assert 0.4 <= rows[(net, 3, 2)]["params"] / zero0["params"] <= 0.6
        # One worker partitions nothing: ZeRO-2 holds the same optimizer state as ZeRO-0.
        assert rows[(net, 2, 1)]["optimizer"] == pytest.approx(zero0["optimizer"], rel=0.01)
        # ZeRO's reduction bucket is capped at the network's size (deepspeed.bucket_size's 5e7 elements would
        # be 190 MiB for a network of a few hundred thousand parameters).
        assert 0 < rows[(net, 2, 2)]["buckets"] <= 2 * 4 * (zero0["n_params"] + 4096)


def test_saved_bytes_of_a_linear_layer_is_its_input():
    lin = nn.Linear(5, 3)
    x = torch.randn(4, 5)
    with memory.SavedTensorBytes(exclude=lin.parameters()) as saved:
        y = lin(x)
    assert saved.nbytes == 4 * 5 * 4
    del y


def test_saved_bytes_counts_a_shared_input_once_and_outputs_kept_for_backward():
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    x = torch.randn(4, 5)
    with memory.SavedTensorBytes(exclude=[*a.parameters(), *b.parameters()]) as saved:
        y = torch.relu(a(x)) + b(x)  # x saved by both layers; relu saves its output
    assert saved.nbytes == 4 * 5 * 4 + 4 * 3 * 4
    del y


def test_saved_bytes_include_weights_unless_excluded():
    lin = nn.Linear(5, 3, bias=False)
    x = torch.randn(4, 5, requires_grad=True)  # the input's gradient needs the weight
    with memory.SavedTensorBytes() as saved:
        y = lin(x)
    assert saved.nbytes == 4 * 5 * 4 + 3 * 5 * 4
    del y


def test_saved_bytes_of_bf16():
    lin = nn.Linear(8, 2).to(torch.bfloat16)
    with memory.SavedTensorBytes(exclude=lin.parameters()) as saved:
        y = lin(torch.randn(3, 8, dtype=torch.bfloat16))
    assert saved.nbytes == 3 * 8 * 2
    del y


def test_largest_crop_is_the_largest_multiple_of_the_scale_that_fits():
    fit = {"intercept": 1000.0, "bytes_per_hr_pixel": 10.0}
    budget, state = 1_000_000, 200_000
    side = memory.largest_crop(budget, state, fit, scale=4)
    assert side % 4 == 0 and side > 0
    assert state + fit["intercept"] + fit["bytes_per_hr_pixel"] * side**2 <= budget
    assert state + fit["intercept"] + fit["bytes_per_hr_pixel"] * (side + 4) ** 2 > budget
    assert memory.largest_crop(100, state, fit, scale=4) == 0


@pytest.mark.parametrize("model, resolution", [("stylegan2_256", 256), ("stylegan2_1024", 1024)])
def test_stylegan2_jobs_measure_the_shipped_configs_networks(model, resolution, tmp_path, monkeypatch):
    """The StyleGAN2 rows are the G and D of configs/stylegan2_*.yaml as a run builds them: RGB, full size."""
    from PIL import Image

    from distgan import load_config
    from distgan.data import data_shape
    from distgan.models import build_discriminator, build_generator

    assert memory.parse_args(["--models", f"dcgan,{model}"]).models == ["dcgan", model]
    Image.new("RGB", (resolution, resolution)).save(tmp_path / "a.png")
    (tmp_path / "inception.pth").write_bytes(b"stand-in")  # the shipped config's FID needs a weights file
    monkeypatch.setenv("DISTGAN_INCEPTION_WEIGHTS", str(tmp_path / "inception.pth"))
    run_cfg = load_config(memory.STYLEGAN2[model], (f"data.path={tmp_path}",))
    shape = data_shape(run_cfg.data)
    assert shape == (3, resolution, resolution)
    for net, build in (("g", build_generator), ("d", build_discriminator)):
        job = memory.Job(model, net, 2, "fp32")
        module, batch = memory.build_network(job, memory.job_config(job, quick=False))
        as_run = build(run_cfg.model, shape)
        assert [p.shape for p in module.parameters()] == [p.shape for p in as_run.parameters()]
        assert tuple(batch.shape[1:]) == ((run_cfg.model.latent_dim,) if net == "g" else shape)
