"""Killing a process together with everything it started, as a crash would."""

from __future__ import annotations

import contextlib


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (a driver and its embedded Ray: GCS, raylet, workers)."""
    import psutil

    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(tree, timeout=60)
