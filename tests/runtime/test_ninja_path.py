"""DeepSpeed's JIT-built ops are built by the ninja beside this Python, whatever PATH the process started
with (two ninja versions keep incompatible build logs and would rebuild the op at each switch), and a
virtual environment keeps its builds to itself (two environments would rebuild over each other's)."""

from __future__ import annotations

import os
import sys

from distgan.runtime.engines import build_ops_in_this_environment


def test_the_environments_ninja_goes_first_once(tmp_path, monkeypatch):
    env_bin, system_bin = tmp_path / "venv-bin", tmp_path / "usr-bin"
    for folder in (env_bin, system_bin):
        folder.mkdir()
        (folder / "ninja").write_text("#!/bin/sh\n")
        (folder / "ninja").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(env_bin / "python"))
    monkeypatch.setenv("PATH", str(system_bin))
    build_ops_in_this_environment()
    assert os.environ["PATH"].split(os.pathsep) == [str(env_bin), str(system_bin)]
    build_ops_in_this_environment()
    assert os.environ["PATH"].split(os.pathsep) == [str(env_bin), str(system_bin)], "prepended once"


def test_an_environment_without_ninja_leaves_path_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "/usr/bin")
    build_ops_in_this_environment()
    assert os.environ["PATH"] == "/usr/bin"


def test_a_virtual_environment_builds_in_its_own_directory_unless_told_otherwise(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    venv.mkdir()
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    build_ops_in_this_environment()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(venv / "torch_extensions")

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/opt/ops")  # the user's choice stands
    build_ops_in_this_environment()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == "/opt/ops"


def test_outside_a_virtual_environment_the_torch_default_stands(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", "/usr")
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    build_ops_in_this_environment()
    assert "TORCH_EXTENSIONS_DIR" not in os.environ
