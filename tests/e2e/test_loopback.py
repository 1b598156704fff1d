"""Nothing an embedded run starts listens beyond loopback: not while idle, not while it trains.

- Idle: the shared Ray's servers (GCS, raylet, dashboard, workers).
- A 2-worker run that streams its images through Ray Data: rank 0 looks between steps, during evaluation and
  while it checkpoints, at every listening socket of every process under this test process (the embedded
  Ray, the run's workers, the decoding tasks' processes, this process too), and finds its rendezvous store
  (``MASTER_PORT``) among them: torch's ``env://`` store listens on ``::`` (every interface) unless the
  launcher binds it (``distgan/launch/rendezvous.py``). The same run is the suite's streamed training run
  (one start-up for both): it logs its data wait, names and counts the damaged file it skipped, and
  evaluates against a reference subset of the streamed folder.
- A sweep trial: a poller takes snapshots while a one-trial sweep trains (beside the run, to share start-up).
- The in-process benchmark path: ``benchmarks/steady_state.py --skip-ray`` looks at its own sockets at a report.
- ``distgan serve`` on a Ray of its own: every server under the CLI process while it answers (but the one
  Ray Serve binds everywhere, behind Ray's token).

Small runs (the sweep a ring8 MLP, the run the tiny DCGAN; evaluation on pixels or points, no feature network):
the rendezvous does not depend on the model.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from distgan import load_config
from distgan.launch.train import train
from distgan.launch.tune import run_tune
from distgan.tracking.jsonl import read_metrics
from tiny_run import tiny

pytestmark = pytest.mark.ray

SMALL = ("model.family=mlp", "data.name=ring8", "data.num_samples=512", "model.latent_dim=4", "model.g_width=16",
         "model.d_width=16", "model.g_norm=none", "model.d_norm=none", "train.batch_size=16", "train.steps=3",
         "train.log_every=1", "train.sample_every=100", "train.checkpoint_every=2", "eval.every=2",
         "eval.metrics=fid", "eval.n=64", "tracking.wandb=false")
ROOT_FILE = "root.pid"
"""Where the test leaves its pid for rank 0: the run's processes are this process's descendants."""
CHECKS = "listening.jsonl"
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "steady_state.py"


def open_sockets(root: int) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every socket that accepts connections or datagrams from anyone:
    listening TCP sockets and unconnected UDP ones, of ``root`` and all its descendants."""
    procs = {root: psutil.Process(root), **{p.pid: p for p in psutil.Process(root).children(recursive=True)}}
    found = []
    for c in psutil.net_connections(kind="inet"):
        if c.pid in procs and (c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr)):
            try:
                name = procs[c.pid].name()
            except psutil.NoSuchProcess:  # exited since the listing
                continue
            found.append((c.pid, name, c.laddr.ip, c.laddr.port))
    return found


def exposed(sockets) -> list:
    return [s for s in sockets if not ipaddress.ip_address(s[2].removeprefix("::ffff:")).is_loopback]


def test_every_ray_server_listens_on_loopback(local_ray):
    listening = open_sockets(os.getpid())
    assert len(listening) >= 3, "expected at least the GCS, raylet and a worker to be listening"
    assert not exposed(listening), f"Ray servers reachable from outside this machine: {exposed(listening)}"


def checking_loop(loop_config: dict) -> None:
    """The production worker function; rank 0 records the run's open sockets between steps (each log
    report), during evaluation (after the scores, inside ``Trainer.evaluate``) and while it checkpoints
    (the report that hands Ray the checkpoint). Every rank leaves its pid, to tell its process from others."""
    import ray.train

    from distgan.launch import session as session_mod
    from distgan.runtime import loop

    run_dir = Path(loop_config["run_dir"])
    rank = ray.train.get_context().get_world_rank()
    (run_dir / f"rank{rank}.pid").write_text(str(os.getpid()))
    if rank == 0:
        root = int((run_dir.parent / ROOT_FILE).read_text())

        def check(phase: str) -> None:
            sockets = open_sockets(root)
            store = [s for s in sockets if s[0] == os.getpid() and s[3] == int(os.environ["MASTER_PORT"])]
            with open(run_dir / CHECKS, "a") as f:
                f.write(json.dumps({"phase": phase, "sockets": sockets, "store": store}) + "\n")

        evaluate = loop.Trainer.evaluate

        def checked_evaluate(self):
            scores = evaluate(self)
            check("evaluation")
            return scores

        class CheckingSession(session_mod.RaySession):
            def report(self, metrics, checkpoint_dir=None, name=None):
                check("checkpointing" if checkpoint_dir is not None else "between steps")
                super().report(metrics, checkpoint_dir, name)

        loop.Trainer.evaluate = checked_evaluate
        session_mod.RaySession = CheckingSession
    session_mod.train_fn(loop_config)


def test_a_run_and_a_sweep_trial_listen_on_loopback_only(local_ray, tmp_path):
    """A 2-worker run checked from inside, and at the same time (their start-ups overlap: half the wall time)
    a one-trial sweep, one worker, watched by a poller that snapshots every 0.2 s."""
    runs, sweeps = tmp_path / "runs", tmp_path / "sweeps"
    runs.mkdir()
    (runs / ROOT_FILE).write_text(str(os.getpid()))
    snapshots, done, outcome = [], threading.Event(), {}

    def poll() -> None:
        while not done.wait(0.2):
            snapshots.append(open_sockets(os.getpid()))

    def sweep() -> None:
        try:
            run_tune(load_config(None, SMALL + ("train.steps=2", "scaling.num_workers=1", "tune.num_samples=1",
                                                "tune.space={optim.g.lr: {grid: [1.0e-3]}}")),
                     name="sweep", storage=sweeps)
        except BaseException as exc:  # re-raised below, in the test's thread
            outcome["error"] = exc

    threads = [threading.Thread(target=poll, daemon=True), threading.Thread(target=sweep, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        result = train(streamed_run(tmp_path / "imgs"), name="run", storage=runs, progress=False,
                       train_loop=checking_loop)
    finally:
        threads[1].join(timeout=600)
        done.set()
        threads[0].join()
    if "error" in outcome:
        raise outcome["error"]
    assert result.metrics["step"] == 6 and (sweeps / "sweep" / "results.json").exists()
    check_streamed_run(runs / "run")

    checks = [json.loads(line) for line in (runs / "run" / CHECKS).read_text().splitlines()]
    assert {c["phase"] for c in checks} == {"between steps", "evaluation", "checkpointing"}, checks
    for c in checks:
        assert c["store"], f"rank 0's rendezvous store was not listening at {c['phase']}: {c['sockets']}"
        assert not exposed(c["sockets"]), f"reachable from outside at {c['phase']}: {exposed(c['sockets'])}"

    found = sorted({s for snap in snapshots for s in map(tuple, exposed(snap))})
    assert not found, f"reachable from outside while the sweep trial or the run trained: {found}"
    # Not vacuous: a snapshot caught the trial's worker (not one of the run's) with its process group up.
    # An idle Ray worker listens on one port, its own server; rank 0 adds the store and a gloo listener per group.
    run_pids = {int((runs / "run" / f"rank{rank}.pid").read_text()) for rank in (0, 1)}
    trial_listeners = [sum(s[0] == pid for s in snap) for snap in snapshots for pid, name, _, _ in snap
                       if name.startswith("ray::RayTrainWo") and pid not in run_pids]
    assert max(trial_listeners, default=0) >= 3, "no snapshot caught the sweep trial's process group"


def streamed_run(folder: Path):
    """2 workers of the tiny DCGAN streaming 64 small PNGs, one damaged, through Ray Data; FID on pixels against
    a reference subset of 48 (identity features: no network to train for this folder)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    (folder / "063.png").write_bytes(b"damaged")  # met in the first epoch (2 global batches of 32)
    return tiny(f"data.path={folder}", "data.skip_corrupt=true", "data.stream=true", "data.prefetch_batches=2",
                "scaling.num_workers=2", "eval.n=64", "eval.reference_n=48", "eval.features=identity",
                "eval.metrics=fid", "tracking.wandb=false")


def check_streamed_run(run_dir: Path) -> None:
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 6]
    for r in records:  # the slowest rank's wait per window: a part of the window's wall time, not a total
        window_s = 2 * 32 / r["images_per_s"]
        assert 0 < r["data_wait_s"] < window_s, (r["data_wait_s"], window_s)
    assert records[-1]["data_skipped"] == 1  # one bad file, counted once however often it came round
    assert records[-1]["fid"] > 0  # evaluated against the reference subset of the streamed folder


PROBE = """
import json, os, sys
import psutil
sys.argv = [{path!r}] + {args!r}
import importlib.util
spec = importlib.util.spec_from_file_location("steady_state", {path!r})
bench = importlib.util.module_from_spec(spec)
sys.modules["steady_state"] = bench
spec.loader.exec_module(bench)
seen = []
report = bench._Session.report
def looking_report(self, metrics, *a, **k):
    seen.extend((c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("inet")
                if c.status == psutil.CONN_LISTEN)
    return report(self, metrics, *a, **k)
bench._Session.report = looking_report
code = bench.main({args!r})
print("SOCKETS " + json.dumps({{"listening": seen, "store": int(os.environ["MASTER_PORT"])}}))
sys.exit(code)
"""


def test_the_in_process_benchmark_path_listens_on_loopback_only(tmp_path):
    args = ["--steps", "2", "--log-every", "1", "--warmup", "0", "--skip-ray", "--set", "model.family=mlp",
            "--set", "data.name=ring8", "--set", "model.g_width=16", "--set", "model.d_width=16",
            "--set", "model.g_norm=none", "--set", "model.d_norm=none", "--set", "train.batch_size=16"]
    env = {**os.environ, "PYTHONPATH": str(BENCHMARK.parents[1])}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(path=str(BENCHMARK), args=args)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SOCKETS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("SOCKETS "):])
    assert any(port == out["store"] for _, port in out["listening"]), out  # the group's store was up
    found = [(ip, port) for ip, port in out["listening"]
             if not ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback]
    assert not found, f"the benchmark's process group is reachable from outside: {found}"


def unauthenticated_call(port: int) -> str:
    """The status of a request to a Serve replica's gRPC server that carries no Ray token."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/ray.serve.ASGIService/HandleRequest", request_serializer=bytes,
                                   response_deserializer=bytes)
        try:
            call(b"", timeout=10)
        except grpc.RpcError as exc:
            return exc.code().name
    return "OK"


def test_distgan_serve_on_its_own_ray_listens_on_loopback_and_stops_on_sigterm(tmp_path):
    """``distgan serve`` without ``--address`` starts a Ray of its own: its GCS, raylet, dashboard and workers
    must listen on loopback too, not only the HTTP proxy (they listened on every interface before). A fresh CLI process with nothing of this
    session's switches in its environment, as a user starts it; SIGTERM (a service manager's stop) takes the
    application down and Ray with it."""
    import signal
    import time
    import urllib.request

    from ports import free_port
    from tiny_generators import save_tiny

    generator = save_tiny(tmp_path / "g", "dcgan")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    proc = subprocess.Popen([sys.executable, "-m", "distgan", "serve", str(generator), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 180
        while not any(line.startswith("serving samples from") for line in lines):  # the CLI's word it is up
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?n=4", timeout=30) as reply:
            assert reply.read().startswith(b"\x89PNG")
        listening = open_sockets(proc.pid)
        assert len(listening) >= 4, f"expected Ray's servers and Serve's proxy among {listening}"
        # One exception, Ray Serve's own: each replica's inter-deployment gRPC server binds "[::]:0" with no
        # option to move it (ray/serve/_private/replica.py, Ray 2.60). Ray's token authentication guards it:
        # a call without the token is refused.
        replicas = [s for s in exposed(listening) if s[1].startswith("ray::ServeReplica")]
        assert len(replicas) == 1 and exposed(listening) == replicas, exposed(listening)
        assert unauthenticated_call(replicas[0][3]) == "UNAUTHENTICATED"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=30)
        out = "".join(lines)
        assert proc.returncode == 0 and "stopped serving 'distgan'" in out, out[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
