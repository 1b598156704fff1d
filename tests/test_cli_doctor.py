"""``distgan doctor`` on this machine, in-process: what it reports, when it fails, and what it never prints."""

from __future__ import annotations

import os
import socket
import time

import deepspeed
import pytest
import ray
import torch

from distgan.cli import main as cli_main
from distgan.launch import doctor

KEY = "distgan-test-key-0f3c9a"


def lines_of(out: str) -> dict[str, str]:
    """Each check's line by its name (the words after the status)."""
    found = {}
    for line in out.splitlines():
        status = line[:4].strip()
        if status in ("ok", "warn", "fail"):
            name = line[6:].split("  ")[0].strip()
            found[name] = line
    return found


def test_this_machine_passes_and_reports_the_installed_versions(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert cli_main(["doctor", "--storage", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    checks = lines_of(out)
    assert checks["torch"].split()[-1] == torch.__version__
    assert checks["ray"].split()[-1] == ray.__version__
    assert checks["deepspeed"].split()[-1] == deepspeed.__version__
    assert checks["storage"].startswith("ok")
    assert checks["w&b"].startswith("ok") and "online" in checks["w&b"]
    assert "deepspeed ops" in checks and "gpus" in checks
    if not torch.cuda.is_available():
        assert checks["gpus"].startswith("warn")
    assert KEY not in out
    assert not (tmp_path / "runs").exists()  # probed in its parent: doctor leaves nothing behind
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU accelerator's first-use op")
def test_the_shm_op_counts_as_built_where_runs_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    check = doctor.check_deepspeed_ops()
    assert check.status == "warn" and "builds deepspeed_shm_comm" in check.advice and str(tmp_path) in check.advice
    (tmp_path / "deepspeed_shm_comm").mkdir()
    (tmp_path / "deepspeed_shm_comm" / "deepspeed_shm_comm.so").write_bytes(b"")
    check = doctor.check_deepspeed_ops()
    assert check.status == "ok" and "deepspeed_shm_comm" in check.detail.split("built: ")[1].split(";")[0]


def test_an_unwritable_storage_fails_and_is_named(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    storage = blocker / "runs"
    assert cli_main(["doctor", "--storage", str(storage)]) == 1
    out = capsys.readouterr().out
    line = lines_of(out)["storage"]
    assert line.startswith("fail") and str(storage) in line
    assert "1 failed (storage)" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_a_read_only_storage_fails(tmp_path, capsys):
    storage = tmp_path / "runs"
    storage.mkdir()
    storage.chmod(0o500)
    try:
        assert cli_main(["doctor", "--storage", str(storage)]) == 1
    finally:
        storage.chmod(0o700)
    assert lines_of(capsys.readouterr().out)["storage"].startswith("fail")


def test_an_address_where_nothing_listens_fails_quickly_and_names_it(tmp_path, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    began = time.monotonic()
    check = doctor.check_ray_address(address)
    assert time.monotonic() - began < doctor.CONNECT_TIMEOUT_S + 2
    assert check.status == "fail" and address in check.detail
    assert cli_main(["doctor", "--address", f"http://{address}", "--storage", str(tmp_path)]) == 1
    line = lines_of(capsys.readouterr().out)["ray cluster"]
    assert line.startswith("fail") and address in line


def test_w_and_b_without_a_key_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    check = doctor.check_wandb_mode(None)
    assert check.status == "warn" and "offline" in check.detail and "wandb sync" in check.advice
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    check = doctor.check_wandb_mode(None)
    assert check.status == "warn" and KEY not in check.detail + check.advice


def test_missing_inception_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv("DISTGAN_INCEPTION_WEIGHTS", raising=False)
    check = doctor.check_inception(None)
    assert check.status == "warn" and "DISTGAN_INCEPTION_WEIGHTS" in check.advice
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"")
    monkeypatch.setenv("DISTGAN_INCEPTION_WEIGHTS", str(weights))
    assert doctor.check_inception(None) == doctor.Check("inception weights", "ok", str(weights))
