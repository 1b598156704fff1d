"""A hung test fails alone and the run goes on: pytest in a subprocess with this project's pytest config
(pyproject.toml's addopts: one xdist worker; pytest-timeout's thread method) and the suite's plugin
(tests/processes.py), on a file of two tests whose first never returns."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

TESTS = '''
import os
import subprocess
import threading
from pathlib import Path


def test_hangs():
    Path("first.worker").write_text(os.environ["PYTEST_XDIST_WORKER"])
    # A child, and a daemon (its parent exits at once): what a Ray or a `ray start` node leaves running.
    child = subprocess.Popen(["sleep", "600"])
    daemon = subprocess.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    Path("left.pids").write_text(f"{child.pid} {daemon.stdout.strip()}")
    print("waiting for what never comes")
    threading.Event().wait()  # the main thread blocked in C, as in a ray.get: no signal gets it out


def test_after_the_hang():
    Path("second.worker").write_text(os.environ["PYTEST_XDIST_WORKER"])
'''


def test_a_hung_test_fails_alone_named_a_timeout_and_its_processes_are_killed(tmp_path):
    (tmp_path / "test_hang.py").write_text(TESTS)
    # No outer settings leak in: the run sees the project's config alone, as `make test` does.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COLUMNS"))}
    env.update(PYTHONPATH=str(ROOT / "tests"), COLUMNS="200")
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
                           str(tmp_path), "-p", "processes", "-p", "no:cacheprovider", "-o", "timeout=3",
                           "test_hang.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    out = done.stdout + done.stderr

    assert done.returncode == 1, out
    assert "1 failed, 1 passed" in out, out
    # The -ra line names the test and says what happened; the failure holds its output and where it hung.
    assert "FAILED test_hang.py::test_hangs - Timeout: ran past 3 s (pytest-timeout)" in out, out
    assert "waiting for what never comes" in out and "threading.Event().wait()" in out, out
    # The second test ran in a fresh worker, after the hung one's was ended.
    assert (tmp_path / "first.worker").read_text() == "gw0" and (tmp_path / "second.worker").read_text() == "gw1"
    # What the dead worker left running was killed: its child and the daemon it had adopted.
    assert "killed 2 processes it left behind: sleep" in out, out
    for pid in map(int, (tmp_path / "left.pids").read_text().split()):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert took < 60, f"the run took {took:.1f} s for one 3-s timeout"
