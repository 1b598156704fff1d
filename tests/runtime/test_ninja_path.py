"""DeepSpeed's JIT-built ops are built by the ninja beside this Python, whatever PATH the process started
with: two ninja versions keep incompatible build logs and would rebuild the op at each switch."""

from __future__ import annotations

import os
import sys

from distgan.runtime.engines import use_this_environments_ninja


def test_the_environments_ninja_goes_first_once(tmp_path, monkeypatch):
    env_bin, system_bin = tmp_path / "venv-bin", tmp_path / "usr-bin"
    for folder in (env_bin, system_bin):
        folder.mkdir()
        (folder / "ninja").write_text("#!/bin/sh\n")
        (folder / "ninja").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(env_bin / "python"))
    monkeypatch.setenv("PATH", str(system_bin))
    use_this_environments_ninja()
    assert os.environ["PATH"].split(os.pathsep) == [str(env_bin), str(system_bin)]
    use_this_environments_ninja()
    assert os.environ["PATH"].split(os.pathsep) == [str(env_bin), str(system_bin)], "prepended once"


def test_an_environment_without_ninja_leaves_path_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", "/usr/bin")
    use_this_environments_ninja()
    assert os.environ["PATH"] == "/usr/bin"
