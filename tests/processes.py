"""The processes the tests start: killing one with everything it started, as a crash would; and the suite's
per-test isolation, a pytest plugin (tests/conftest.py loads it; ``-p processes`` loads it without that).

The suite runs in one pytest-xdist worker (``-n 1`` in pyproject.toml's addopts) so that a hang fails one
test instead of the run. pytest-timeout's thread method can end a hung test only by ending its process
(``os._exit``): a ``ray.get`` blocked in the main thread cannot be interrupted. Ended in a worker, that is
one failed test: xdist reports the test the worker was running and starts a fresh worker for the rest.
This plugin makes that report say what happened (pytest-timeout would write its stacks to the worker's
stdout, which xdist sends to /dev/null, and xdist itself says only "crashed"), and kills what the dead
worker left running, and nothing else: every pytest process of the run is a subreaper, so whatever a worker
started stays in its process tree, and comes to the controller when the worker dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import psutil
import pytest

TIMEOUTS_KEY = "distgan_timeouts"
"""The worker input naming the controller's directory where each worker leaves its pid, and a worker that
times out the record of it."""
_records = pytest.StashKey[str]()
_reaping = pytest.StashKey[bool]()
_crashes = pytest.StashKey[int]()
_unrun = pytest.StashKey[int]()


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (a driver and its embedded Ray: GCS, raylet, workers)."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for p in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(tree, timeout=60)


def become_subreaper() -> bool:
    """Make orphaned descendants of this process its children instead of init's (Linux ``prctl``).

    A process that dies leaves what it started to the nearest such ancestor: daemons (``ray start``'s GCS
    and raylet) and the children of a process that died with it (an embedded Ray's agents once its raylet
    is gone). Their command lines and environments cannot say whose they are (Ray rewrites its processes'
    titles over both), so being their parent is what keeps them findable."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):  # not Linux: nothing is cleaned up after a crash
        return False


def kill_orphans(keep: set[int], rounds: int = 20) -> list[str]:
    """SIGKILL every child of this (subreaper) process but ``keep``, with its descendants; returns their names.

    Rounds, because a killed process's children come to us only once it is dead."""
    names: list[str] = []
    for _ in range(rounds):
        orphans = [p for p in psutil.Process().children() if p.pid not in keep]
        if not orphans:
            break
        tree = []
        for proc in orphans:
            with contextlib.suppress(psutil.Error):
                tree += [proc, *proc.children(recursive=True)]
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    names.append(proc.name())
                proc.kill()
        psutil.wait_procs(tree, timeout=30)  # reaps our children among them
    return names


# -- the plugin: controller side -------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        if TIMEOUTS_KEY in config.workerinput:
            become_subreaper()
            # The controller kills what a dead worker left, sparing the live ones.
            Path(config.workerinput[TIMEOUTS_KEY], f"{config.workerinput['workerid']}.pid").write_text(
                str(os.getpid()))
    elif getattr(config.option, "dist", "no") != "no" and getattr(config.option, "tx", None):  # an xdist controller
        config.stash[_records] = tempfile.mkdtemp(prefix="distgan-test-workers-")
        config.stash[_reaping] = become_subreaper()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _records in config.stash:
        shutil.rmtree(config.stash[_records], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    if _records in node.config.stash:
        node.workerinput[TIMEOUTS_KEY] = node.config.stash[_records]


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:
    """Turn xdist's "worker crashed while running X" into the timeout it was, when the worker left a record;
    and put the tests the dead worker had been sent back in their place."""
    config = report.node.config
    if isinstance(getattr(sched, "pending", None), list):
        # xdist queues them after all the others: the rest of a module would run at the very end, its module
        # fixtures (a trained run, a 2-node cluster) made twice. The indices are in collection order.
        sched.pending.sort()
        config.stash[_unrun] = len(sched.pending)
    workerid = report.node.workerinput["workerid"]
    with contextlib.suppress(OSError, ValueError, KeyError):  # no record: a crash, reported as xdist does
        record = json.loads(Path(report.node.workerinput[TIMEOUTS_KEY], f"{workerid}.json").read_text())
        if record["nodeid"] == crashitem:
            report.location = (report.location[0], None, crashitem.split("::", 1)[-1])  # the section's title
            report.longrepr = _TimeoutRepr(
                f"Timeout: ran past {record['timeout']:g} s (pytest-timeout); "
                f"its worker {workerid} was ended and a fresh one runs the rest", record["details"])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """After a worker dies, kill what it left: an embedded Ray's GCS and raylet die with it but its dashboard
    and runtime-env agents live on (measured: 200 MB, adopted by init, still there minutes later), and
    ``ray start`` nodes, a network namespace's holder or a ``distgan train`` subprocess live on whole, holding
    CPUs and memory the rest of the run needs. A worker that ends normally has torn down its fixtures, so
    nothing is touched then."""
    if error is None or _records not in node.config.stash:
        return
    node.config.stash[_crashes] = node.config.stash.get(_crashes, 0) + 1
    if not node.config.stash[_reaping]:  # its children are the workers alone
        return
    workers = {int(f.read_text()) for f in Path(node.config.stash[_records]).glob("*.pid")}
    dead = Path(node.config.stash[_records], f"{node.workerinput['workerid']}.pid")
    if dead.exists():
        # Its orphans come to us once it is fully dead (a zombie), not when its channel closes.
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(int(dead.read_text()))
            for _ in range(100):
                if proc.status() == psutil.STATUS_ZOMBIE:
                    break
                time.sleep(0.1)
    killed = kill_orphans(keep=workers)
    if killed:
        node.config.get_terminal_writer().line(
            f"[{node.gateway.id}] killed {len(killed)} processes it left behind: {', '.join(sorted(set(killed)))}")


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Say when a worker that kept dying stopped the run: xdist says so only without ``-q``."""
    limit = getattr(config.option, "maxworkerrestart", None)
    crashes = config.stash.get(_crashes, 0)
    if limit is not None and crashes > int(limit):
        unrun = config.stash.get(_unrun, None)
        terminalreporter.write_sep("=", f"{crashes} workers died, more than --max-worker-restart={limit}: the run "
                                        f"stopped{f' with {unrun} tests not run' if unrun else ''}", red=True)


class _TimeoutRepr:
    """A failure's text whose first line is what ``-ra`` shows (a plain string would show every line on CI)."""

    def __init__(self, headline: str, details: str) -> None:
        self.reprcrash = type("ReprCrash", (), {"message": headline})()
        self.text = f"{headline}\n\n{details}".rstrip()

    def toterminal(self, tw) -> None:
        tw.line(self.text)

    def __str__(self) -> str:
        return self.text


# -- the plugin: worker side -----------------------------------------------------------------------------


@pytest.hookimpl(optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings) -> bool | None:
    """In an xdist worker, pytest-timeout's thread method with a report the controller can read."""
    if settings.method != "thread" or TIMEOUTS_KEY not in getattr(item.config, "workerinput", {}):
        return None  # pytest-timeout's own timer
    timer = threading.Timer(settings.timeout, _timed_out, (item, settings.timeout))
    timer.name = f"distgan timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # pytest-timeout's pytest_timeout_cancel_timer calls it
    timer.start()
    return True


def _timed_out(item: pytest.Item, timeout: float) -> None:
    """Leave the test's output and every thread's stack for the controller, then end this worker (the only
    way to stop a main thread blocked in C, as ``ray.get`` is); the controller reports the test failed."""
    try:
        parts = []
        capman = item.config.pluginmanager.getplugin("capturemanager")
        if capman:
            capman.suspend_global_capture(item)
            out, err = capman.read_global_capture()
            parts += [f"~~~ Captured {name} ~~~\n{text}" for name, text in (("stdout", out), ("stderr", err)) if text]
        names = {t.ident: t.name for t in threading.enumerate()}
        main = threading.main_thread().ident  # where the test hangs: first
        for ident, frame in sorted(sys._current_frames().items(), key=lambda kv: kv[0] != main):
            if ident != threading.get_ident():
                parts.append(f"~~~ Stack of {names.get(ident, '<unknown>')} ({ident}) ~~~\n"
                             + "".join(traceback.format_stack(frame)))
        record = {"nodeid": item.nodeid, "timeout": timeout, "details": "\n".join(parts)}
        workerinput = item.config.workerinput
        path = Path(workerinput[TIMEOUTS_KEY], f"{workerinput['workerid']}.json")
        path.with_suffix(".tmp").write_text(json.dumps(record))
        path.with_suffix(".tmp").replace(path)  # whole or absent when the controller reads it
        sys.stderr.write(f"\n[{workerinput['workerid']}] Timeout: {item.nodeid} ran past {timeout:g} s; "
                         "ending this worker\n")
    except Exception:  # the worker must end whatever went wrong above
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(1)

