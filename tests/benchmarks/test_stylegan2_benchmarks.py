"""The StyleGAN2 pass benchmarks measure what they claim, on the CPU config (a few ms a pass):
benchmarks/checkpointing.py (checkpointed synthesis blocks keep fewer activations) and
benchmarks/regularization.py (the same passes and losses on two convolutions)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distgan.models import conv_gradfix

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
DIGITS = BENCHMARKS.parent / "configs" / "stylegan2_digits.yaml"
PASSES = ("g_main", "g_pl", "d_main", "d_r1")


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def run_on_digits(script: str, cwd: Path) -> tuple[str, list[dict]]:
    """The script on the digits config in fp32 at batch 2, once: its output and its last line's JSON."""
    proc = run(script, "--config", str(DIGITS), "--precision", "fp32", "--batch", "2", "--repeats", "1", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(proc.stdout.strip().splitlines()[-1])


def test_checkpointing_keeps_a_fraction_of_the_activations_on_cpu(tmp_path):
    stdout, (off, on) = run_on_digits("checkpointing.py", tmp_path)
    assert (off["checkpointing"], on["checkpointing"]) == (False, True)
    assert off["resolution"] == on["resolution"] == 16 and off["device"] == "cpu"
    # Only block boundaries (and the mapping network's activations) stay.
    assert 0 < on["saved_bytes"] < off["saved_bytes"] / 4
    assert all(r[p]["seconds"] > 0 for r in (off, on) for p in ("main", "pl"))
    assert "checkpointing keeps" in stdout


def test_both_convolutions_compute_the_same_four_passes_on_cpu(tmp_path):
    stdout, (gradfix, torchs) = run_on_digits("regularization.py", tmp_path)
    assert (gradfix["conv"], torchs["conv"]) == ("gradfix", "torch") and gradfix["device"] == "cpu"
    assert gradfix["resolution"] == 16 and gradfix["ada_p"] == 0.5
    for name in PASSES:
        assert gradfix[name]["seconds"] > 0 and torchs[name]["seconds"] > 0
        # Same networks, seeds and draws in both arms: only the kernels differ, not the numbers.
        assert gradfix[name]["loss"] == pytest.approx(torchs[name]["loss"], rel=1e-5, abs=1e-9)
    assert gradfix["d_r1"]["loss"] > 0 and gradfix["g_pl"]["loss"] > 0
    assert "d_r1 takes" in stdout and "g_pl takes" in stdout


def test_an_unknown_pass_is_refused_by_name(tmp_path):
    proc = run("regularization.py", "--passes", "g_main,d_r2", cwd=tmp_path)
    assert proc.returncode == 2 and "--passes: ['d_r2']" in proc.stderr


def test_the_torch_arm_reroutes_stylegan2s_convolutions_and_puts_them_back():
    spec = importlib.util.spec_from_file_location("regularization_benchmark", BENCHMARKS / "regularization.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    x, w = torch.randn(1, 2, 5, 5, requires_grad=True), torch.randn(3, 2, 3, 3)
    with benchmark.convolution("torch"):
        assert type(conv_gradfix.conv2d(x, w).grad_fn).__name__ == "ConvolutionBackward0"
    with benchmark.convolution("gradfix"):
        assert type(conv_gradfix.conv2d(x, w).grad_fn).__name__ == "_Conv2dBackward"
    assert type(conv_gradfix.conv2d(x, w).grad_fn).__name__ == "_Conv2dBackward"
