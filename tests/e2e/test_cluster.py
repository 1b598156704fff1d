"""A real 2-node Ray cluster with token authentication, driven through ``distgan submit``.

The head (127.0.0.2, 2 CPUs) and a second node (127.0.0.3, 2 CPUs) are started
with ``ray start`` in their own temp dir and in a network namespace of their
own that has nothing but loopback: in cluster mode Ray's GCS and raylets listen
on every interface, and the namespace keeps that from reaching beyond this
machine's loopback. Where a test gives each worker 2 CPUs, its 2 training
workers must land one on each node. Every CLI call runs in that namespace in a subprocess with the token in
its environment, as a user's shell would have it. The cluster is stopped at
the end, pass or fail, by killing every process in its namespace (``ray stop``
would also stop the test session's own Ray).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from distgan.tracking.jsonl import read_metrics
from tiny_run import OVERRIDES

QUICK = ("tracking.wandb=false", "eval.every=0")
"""Neither W&B nor evaluation is what these tests are about."""

pytestmark = pytest.mark.ray


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def namespace_processes(holder_pid: int) -> list:
    """Every process in the holder's network namespace but the holder: the cluster's (Ray renames its daemons
    and workers, so their command lines cannot be told apart from the session's own Ray's)."""
    import psutil

    netns = os.readlink(f"/proc/{holder_pid}/ns/net")
    inside = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != holder_pid and os.readlink(f"/proc/{proc.pid}/ns/net") == netns:
                inside.append(proc)
        except OSError:  # gone, or not ours to read
            continue
    return inside


def stop_cluster(holder: subprocess.Popen) -> None:
    """Kill every process in the holder's network namespace, then the holder."""
    kill_all(namespace_processes(holder.pid))
    holder.kill()
    holder.wait()


def kill_all(procs: list) -> int:
    """SIGKILL each process (one gone already is fine) and wait for them; returns how many there were."""
    import psutil

    for proc in procs:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    return len(procs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # Holds a network namespace with only loopback (up) for as long as the cluster lives.
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep 3600"])
    netns = ["nsenter", "-t", str(holder.pid), "-n"]
    # A short temp dir: Ray's unix sockets live under it and their paths have a length limit.
    temp_dir = tempfile.mkdtemp(prefix="dgr", dir="/tmp")
    token_file = tmp_path_factory.mktemp("auth") / "token"
    token_file.write_text(secrets.token_hex(32))
    port, dashboard = 6379, 8265  # the namespace is ours alone: Ray's default ports are free there
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
           "RAY_USAGE_STATS_ENABLED": "0", "WANDB_MODE": "offline",
           # The nodes' Python is this one, as a cluster image's would be.
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
           # Jobs and Ray Train's state-API polls must find this cluster, not the session's own Ray.
           "RAY_ADDRESS": f"127.0.0.2:{port}",
           # Each try at placing a worker group waits 20 s, not 60: after a node dies, Ray Train's first try
           # still counts the dead node's CPUs (the GCS marks it dead a few seconds later) and must time out.
           "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "20"}
    # The test session keeps its embedded Ray out of cluster mode; these nodes must form a cluster.
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    try:
        time.sleep(0.5)
        assert holder.poll() is None, "could not create a network namespace (unshare --net needs root)"
        subprocess.run([*netns, ray_bin(), "start", "--head", "--node-ip-address=127.0.0.2", f"--port={port}",
                        "--dashboard-host=127.0.0.2", f"--dashboard-port={dashboard}", "--num-cpus=2",
                        f"--temp-dir={temp_dir}", "--disable-usage-stats"], env=env, check=True,
                       capture_output=True, timeout=120)
        cluster = {"address": f"http://127.0.0.2:{dashboard}", "env": env, "netns": netns, "port": port,
                   "holder": holder.pid}
        start_second_node(cluster)
        yield cluster
    finally:
        stop_cluster(holder)
        shutil.rmtree(temp_dir, ignore_errors=True)


def start_second_node(cluster: dict) -> None:
    """The node on 127.0.0.3 (2 CPUs) joins the head."""
    subprocess.run([*cluster["netns"], ray_bin(), "start", f"--address=127.0.0.2:{cluster['port']}",
                    "--node-ip-address=127.0.0.3", "--num-cpus=2", "--disable-usage-stats"], env=cluster["env"],
                   check=True, capture_output=True, timeout=120)


def kill_second_node() -> int:
    """Kill every process of the node on 127.0.0.3 (its raylet and workers name the address on their command
    line), as a machine lost to a failure or a spot reclaim would go. Returns how many were killed."""
    import psutil

    return kill_all([p for p in psutil.process_iter(["cmdline"]) if "127.0.0.3" in " ".join(p.info["cmdline"] or ())])


def training_workers(cluster: dict) -> list:
    """The cluster's Ray Train worker processes (Ray titles each ``ray::RayTrainWorker...``)."""
    import psutil

    found = []
    for proc in namespace_processes(cluster["holder"]):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # gone since
            continue
    return found


@contextlib.contextmanager
def frozen(procs: list):
    """SIGSTOP ``procs`` for the block, SIGCONT them after, however it ends: a test clock held still."""
    import psutil

    try:
        for proc in procs:
            proc.suspend()
        yield procs
    finally:
        for proc in procs:
            try:
                proc.resume()
            except psutil.NoSuchProcess:
                pass


def distgan_cli(cluster: dict, *args: str, env: Optional[dict] = None, timeout: float = 300):
    try:
        return subprocess.run([*cluster["netns"], sys.executable, "-m", "distgan", *args],
                              env=env or cluster["env"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # what it printed is what says where it hung
        out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        raise AssertionError(f"distgan {args[0]} ran past {timeout} s; its output ended:\n{out[-4000:]}") from None


def in_cluster_python(cluster: dict, code: str, timeout: float = 60) -> str:
    done = subprocess.run([*cluster["netns"], sys.executable, "-c", code], env=cluster["env"], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


S3_ENDPOINT = "127.0.0.2:9000"


@pytest.fixture(scope="module")
def cluster_bucket(cluster):
    """An S3 bucket the nodes reach: moto's S3 server (the cloud bucket that cannot exist here) on the head's
    address inside the namespace. The nodes have the session's fake AWS credentials (see conftest).
    Yields the storage URI; the server goes with the namespace."""
    server = subprocess.Popen([*cluster["netns"], sys.executable, "-m", "moto.server", "-H", "127.0.0.2", "-p",
                               S3_ENDPOINT.split(":")[1]], env=cluster["env"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        in_cluster_python(cluster, f"""
import time, boto3, botocore.exceptions
s3 = boto3.client("s3", endpoint_url="http://{S3_ENDPOINT}")
for _ in range(100):
    try:
        s3.create_bucket(Bucket="cluster"); break
    except botocore.exceptions.EndpointConnectionError:
        time.sleep(0.2)
else:
    raise SystemExit("moto's S3 server did not start")
""")
        yield f"s3://cluster/runs?endpoint_override={S3_ENDPOINT}&scheme=http"
    finally:
        server.kill()
        server.wait()


def bucket_objects(cluster: dict, prefix: str) -> dict[str, int]:
    code = (f"import boto3, json; s3 = boto3.client('s3', endpoint_url='http://{S3_ENDPOINT}'); "
            f"print(json.dumps({{o['Key']: o['Size'] for o in s3.list_objects_v2(Bucket='cluster', "
            f"Prefix='{prefix}').get('Contents', [])}}))")
    return json.loads(in_cluster_python(cluster, code))


def bucket_text(cluster: dict, key: str) -> str:
    code = (f"import boto3; s3 = boto3.client('s3', endpoint_url='http://{S3_ENDPOINT}'); "
            f"print(s3.get_object(Bucket='cluster', Key='{key}')['Body'].read().decode())")
    return in_cluster_python(cluster, code)


@pytest.fixture(scope="module")
def bucket_shards(cluster, cluster_bucket, tmp_path_factory) -> str:
    """A shard set in the bucket, packed by ``distgan data pack`` from a folder of 64 grey images."""
    folder = tmp_path_factory.mktemp("digits-like")
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    uri = f"s3://cluster/data/shards?endpoint_override={S3_ENDPOINT}&scheme=http"
    done = distgan_cli(cluster, "data", "pack", str(folder), uri, "--per-shard", "16", timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return uri


def decoding_nodes(cluster: dict) -> list[str]:
    """The nodes where the decoding tasks (``data.streamer: tasks``, named after their transform) ran, from Ray's
    state API."""
    code = ("import json; from ray.util.state import list_tasks; "
            f"tasks = list_tasks(address='{cluster['address']}', filters=[('name', '=', 'DecodeImages')], "
            "limit=10000, raise_on_missing_output=False); "
            # A task cancelled before it was placed (the run ended with it queued) has no node.
            "print(json.dumps(sorted({t.node_id for t in tasks if t.node_id})))")
    return json.loads(in_cluster_python(cluster, code).strip().splitlines()[-1])


def wait_for(what: str, condition, timeout: float, explain=lambda: "") -> None:
    """Poll ``condition`` each second; past ``timeout`` fail with what ``explain`` says of the state."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{explain()}")
        time.sleep(1)


def cluster_state(cluster: dict, run: Path) -> str:
    """What a failed wait leaves to go on: the run's history and console tail, Ray's resources and actors."""
    parts = []
    for name, tail in (("history.jsonl", 3000), ("train.log", 6000)):
        path = run / name
        parts.append(f"--- {name} ---\n" + (path.read_text(errors="replace")[-tail:] if path.is_file() else "(none)"))
    for args in (("status",), ("list", "actors", "--filter", "state!=DEAD", "--limit", "50")):
        done = subprocess.run([*cluster["netns"], ray_bin(), *args, "--address", f"127.0.0.2:{cluster['port']}"],
                              env=cluster["env"], capture_output=True, text=True, timeout=60)
        parts.append(f"--- ray {' '.join(args)} ---\n{(done.stdout + done.stderr)[-4000:]}")
    return "\n".join(parts)


GROW_DECIDED = "resize the worker group from 1 -> 2"
"""What Ray Train's controller logs (to the run's train.log, through the driver) when it decides to grow."""


def read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.is_file() else ""


def registered(run: Path, step: int) -> bool:
    """Whether Ray Train's checkpoint manager (its snapshot in the run directory) holds the checkpoint of ``step``."""
    try:
        snapshot = json.loads((run / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return False
    return any(r.get("checkpoint_dir_name") == f"checkpoint_{step:06d}" for r in snapshot.get("checkpoint_results", []))


def second_node_id(cluster: dict) -> str:
    code = ("import ray; ray.init(address='127.0.0.2:%d', logging_level='ERROR'); "
            "print([n['NodeID'] for n in ray.nodes() if n['Alive'] and n['NodeManagerAddress'] == '127.0.0.3'][0])"
            % cluster["port"])
    return in_cluster_python(cluster, code).strip().splitlines()[-1]


def test_an_elastic_run_shrinks_when_a_node_is_preempted_and_grows_when_it_returns(cluster, tmp_path):
    """``scaling.num_workers: [1, 2]`` with one 2-CPU worker per node. The second node is drained for preemption
    (what a cloud's spot reclaim tells Ray, with a deadline): every rank checkpoints at once; then the node is
    killed whole (raylet and every process). The run goes on alone on the head from that checkpoint; the node
    rejoins (the lone worker held still meanwhile), and at Ray Train's next resize check the group grows back
    to 2; the run ends at its last step with its generator exported. With ``keep_global`` every step takes the
    same global batch at either width.
    (First in the module, on a cluster no run has used: a run whose controller is killed rather than shut
    down, as a stopped job's or a finished Tune trial's is, leaves its resource request with Ray's
    autoscaling coordinator for up to 3 minutes, and an elastic run started meanwhile sees that much less
    room. It takes the second node down and brings it back for the tests after it.)"""
    from distgan.tracking import history

    # Long enough that the one-worker phase reaches a checkpoint past the shrink's (where the test freezes it).
    steps, every = 240, 10
    storage = tmp_path / "shared"
    elastic = (*OVERRIDES, *QUICK, "scaling.num_workers=[1,2]", "scaling.cpus_per_worker=2",
               "scaling.elastic.monitor_interval_s=2", f"train.steps={steps}", f"train.checkpoint_every={every}",
               "train.log_every=2", f"train.sample_every={steps}", "train.keep_checkpoints=3",
               "train.preemption_check_every=2")
    first = distgan_cli(cluster, "submit", *elastic, "--address", cluster["address"], "--storage", str(storage),
                        "--name", "elastic")
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.split(" as job ")[1].split(";")[0]
    run = storage / "elastic"
    seen: dict[int, int] = {}  # the newest step logged at each width, over every read (resumes rewind the file)

    def logged(width: int, after: int = 0) -> bool:
        path = run / "metrics.jsonl"
        for r in read_metrics(path) if path.is_file() else []:
            seen[r["world_size"]] = max(seen.get(r["world_size"], 0), r["step"])
        return seen.get(width, 0) > after

    def rows(event: str, width: int) -> list[dict]:
        return [r for r in history.read(run) if r["event"] == event and r["world_size"] == width]

    def on_a_checkpoint(after: int) -> bool:
        """Whether the newest checkpoint of the one-worker phase, past ``after``, is registered."""
        logged(1)
        newest = seen.get(1, 0) // every * every
        return newest > after and registered(run, newest)

    def job_status() -> str:
        return distgan_cli(cluster, "jobs", "list", "--address", cluster["address"], timeout=60).stdout

    node_down = False
    try:
        wait_cluster = functools.partial(wait_for, explain=lambda: cluster_state(cluster, run))
        # Past the second checkpoint: Ray Train has registered the first by then.
        wait_cluster("two workers past their second checkpoint", lambda: logged(2, after=2 * every), 240)
        drained = subprocess.run([*cluster["netns"], ray_bin(), "drain-node", "--address",
                                  f"127.0.0.2:{cluster['port']}", "--node-id", second_node_id(cluster),
                                  "--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message",
                                  "spot instance reclaimed", "--deadline-remaining-seconds", "120"],
                                 env=cluster["env"], capture_output=True, text=True, timeout=60)
        assert drained.returncode == 0, drained.stderr[-2000:]
        wait_cluster("the checkpoint for the preempted node", lambda: rows("preempted", 2), 120)
        # A notice comes with a deadline (here 120 s): the node is killed once Ray Train has registered the
        # notice's checkpoint, as it has long before any real deadline; killed sooner, the run resumes from
        # the periodic checkpoint before it.
        wait_cluster("Ray Train to register the notice's checkpoint",
                     lambda: registered(run, rows("preempted", 2)[0]["step"]), 60)
        logged(2)
        before_kill = seen[2]
        node_down = kill_second_node() > 0
        assert node_down
        wait_cluster("the run going on on one worker",
                 lambda: rows("resized", 1) and logged(1, rows("resized", 1)[0]["step"]), 300)
        # The one worker is held still while the node comes back: Ray's autoscaling coordinator may offer a
        # new node 20 s after it registers, and a run this short would race that. It is frozen just after
        # Ray Train registered a checkpoint, so the one the grown group resumes from is the newest trained.
        shrunk_at = rows("resized", 1)[0]["step"]
        wait_cluster("a checkpoint registered on one worker", lambda: on_a_checkpoint(shrunk_at), 120)
        with frozen(training_workers(cluster)) as workers:
            assert workers, "no Ray Train worker found in the cluster's namespace"
            start_second_node(cluster)
            node_down = False
            wait_cluster("Ray Train deciding to grow", lambda: GROW_DECIDED in read_text(run / "train.log"), 300)
        wait_cluster("the run growing back to two", lambda: rows("resized", 2), 300)
        before_grow = seen[1]
        wait_cluster("the run to finish", lambda: history.read(run)[-1]["event"] == "finished", 300)
        wait_cluster("the job to succeed", lambda: "SUCCEEDED" in job_status(), 120)  # the driver ends after rank 0
    finally:
        if "SUCCEEDED" not in job_status():
            distgan_cli(cluster, "jobs", "stop", job_id, "--address", cluster["address"], timeout=60)
        if node_down:  # the module's next test needs both nodes
            start_second_node(cluster)

    events = [(r["event"], r["world_size"]) for r in history.read(run)]
    assert events == [("started", 2), ("preempted", 2), ("resized", 1), ("resized", 2), ("finished", 2)], events
    notice, shrunk, grown = rows("preempted", 2)[0], rows("resized", 1)[0], rows("resized", 2)[0]
    assert "being preempted" in notice["why"] and "checkpointed step" in notice["why"], notice
    assert "shrunk from 2 to 1 worker after a preemption notice" in shrunk["why"], shrunk
    assert "grown from 1 to 2 workers" in grown["why"], grown
    # Each restart resumed from a checkpoint at most one interval behind what the run had trained; the shrink
    # from the notice's own checkpoint (or a later periodic one).
    assert notice["step"] <= shrunk["step"] and before_kill - shrunk["step"] <= every, (before_kill, shrunk)
    assert before_grow - grown["step"] <= every and grown["step"] > shrunk["step"], (before_grow, grown)
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(2, steps + 1, 2)), "rewound on resume: no step twice"
    widths = [r["world_size"] for r in records]
    assert widths[0] == 2 and 1 in widths and widths[-1] == 2
    # keep_global: 16 samples x 2 workers per step at either width.
    assert {r["images_seen"] / r["step"] for r in records} == {32.0}
    assert (run / "generator.safetensors").is_file()
    # The console said so: the driver's log (train.log in the run directory) has each resize.
    console = (run / "train.log").read_text()
    assert "shrunk from 2 to 1 worker" in console and "grown from 1 to 2 workers" in console
    print(f"notice -> training on 1 worker: {shrunk['time'] - notice['time']:.1f} s; "
          f"grown {grown['time'] - shrunk['time']:.1f} s after the shrink")


def test_submit_follows_a_run_across_both_nodes_into_a_bucket(cluster, cluster_bucket, bucket_shards):
    """Two workers, spread one per node, train from a shard set in the bucket, each node's spare CPU decoding for
    its own worker; the run's outputs land in the bucket."""
    streamed = (f"data.path={bucket_shards}", "data.stream=true", "scaling.placement_strategy=SPREAD")
    done = distgan_cli(cluster, "submit", *OVERRIDES, *QUICK, *streamed, "--address", cluster["address"],
                       "--storage", cluster_bucket, "--name", "two-nodes", "--follow")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(decoding_nodes(cluster)) == 2
    assert "SUCCEEDED" in done.stdout and "Starting run 'two-nodes' in s3://cluster/runs/two-nodes" in done.stdout
    # Ray Train lists its workers with their node's IP: one worker on each node.
    for ip in ("127.0.0.2", "127.0.0.3"):
        assert re.search(rf"ip={re.escape(ip)}, pid=\d+\) world_rank=[01]", done.stdout), (ip, done.stdout[-3000:])
    # Each node uploaded its rank's part of the checkpoint into the bucket; rank 0 the run's files.
    kept = bucket_objects(cluster, "runs/two-nodes/")
    ckpt = "runs/two-nodes/checkpoint_000006/"
    for rel in ("train_state.json", "manifest_rank0.json", "manifest_rank1.json", "rng_rank1.safetensors"):
        assert kept.get(ckpt + rel, 0) > 0, (rel, sorted(kept))
    for rel in ("generator.safetensors", "metrics.jsonl", "config.yaml", "samples/step_000006.png"):
        assert kept.get(f"runs/two-nodes/{rel}", 0) > 0, rel

    listed = distgan_cli(cluster, "jobs", "list", "--address", cluster["address"], timeout=60)
    assert listed.returncode == 0 and "two-nodes" in listed.stdout and "SUCCEEDED" in listed.stdout


def test_submit_tune_runs_a_sweep_on_the_cluster_into_a_bucket(cluster, cluster_bucket):
    """``distgan submit --tune``: the sweep's driver runs as the job, its trials as Ray Train runs on the nodes,
    the whole sweep (Tune's state, trials, summary) kept in the bucket."""
    config = Path(__file__).resolve().parents[2] / "configs" / "tune_dcgan_digits_asha.yaml"
    sweep = (*OVERRIDES, "tracking.wandb=false", "scaling.num_workers=1", "tune.num_samples=2", "train.steps=6",
             "eval.every=6", "eval.metrics=fid", "train.checkpoint_every=6", "tune.scheduler.grace_period=6",
             "tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}, optim.d.lr: {loguniform: [1.0e-4, 1.0e-3]}}")
    done = distgan_cli(cluster, "submit", str(config), *sweep, "--tune", "--address", cluster["address"],
                       "--storage", cluster_bucket, "--name", "lr-sweep", "--follow", timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Submitted tune 'lr-sweep'" in done.stdout and "SUCCEEDED" in done.stdout
    results = json.loads(bucket_text(cluster, "runs/lr-sweep/results.json"))
    assert len(results["trials"]) == 2 and results["best"] is not None
    assert all(row["fid"] is not None and row["fid"] > 0 for row in results["trials"]), results["trials"]
    kept = bucket_objects(cluster, "runs/lr-sweep/")
    for rel in ("best_config.yaml", "best/generator.safetensors", "sweep.yaml"):
        assert kept.get(f"runs/lr-sweep/{rel}", 0) > 0, (rel, sorted(kept))
    assert any(key.startswith("runs/lr-sweep/tune/") for key in kept)
    for row in results["trials"]:  # each trial is a run of its own, with its checkpoint in the bucket
        trial = f"runs/lr-sweep/trials/{row['trial']}/"
        assert kept.get(trial + "config.yaml", 0) > 0, row["trial"]
        assert kept.get(trial + "attempts/attempt_000/checkpoint_000006/train_state.json", 0) > 0, row["trial"]


def test_wrong_token_and_dead_address_fail_fast_and_clearly(cluster, tmp_path):
    wrong = {**cluster["env"], "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    wrong.pop("RAY_AUTH_TOKEN_PATH")
    started = time.monotonic()
    refused = distgan_cli(cluster, "submit", *OVERRIDES, "--address", cluster["address"], "--storage",
                          str(tmp_path), "--name", "x", env=wrong, timeout=60)
    assert refused.returncode == 2 and "refused the token" in refused.stderr, refused.stderr
    dead = distgan_cli(cluster, "submit", *OVERRIDES, "--address", "http://127.0.0.2:9",
                       "--storage", str(tmp_path), "--name", "x", timeout=60)
    assert dead.returncode == 2 and "no Ray dashboard answers" in dead.stderr, dead.stderr
    bad = distgan_cli(cluster, "submit", "train.stepz=3", "--address", cluster["address"], "--storage",
                      str(tmp_path), "--name", "x", timeout=60)
    assert bad.returncode == 2 and "did you mean 'train.steps'" in bad.stderr
    assert time.monotonic() - started < 45
    assert not (tmp_path / "x").exists()


def test_a_stopped_job_resumes_when_submitted_again(cluster, tmp_path):
    storage = tmp_path / "shared"
    overrides = (*OVERRIDES, *QUICK, "train.checkpoint_every=5", "train.log_every=5")
    first = distgan_cli(cluster, "submit", *overrides, "train.steps=200", "--address", cluster["address"],
                        "--storage", str(storage), "--name", "again")
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.split(" as job ")[1].split(";")[0]
    run = storage / "again"
    deadline = time.monotonic() + 180
    while not list(run.glob("checkpoint_*/train_state.json")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(run.glob("checkpoint_*")), "no checkpoint within 3 minutes"
    stopped = distgan_cli(cluster, "jobs", "stop", job_id, "--address", cluster["address"], timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    while "STOPPED" not in distgan_cli(cluster, "jobs", "list", "--address", cluster["address"]).stdout:
        assert time.monotonic() < deadline, "the job did not stop"
        time.sleep(1)
    saved = max(int(p.name.split("_")[1]) for p in run.glob("checkpoint_*") if (p / "train_state.json").exists())
    assert saved < 200

    # Resubmitted with the same name (and a step count just past the checkpoint, to keep the test short).
    again = distgan_cli(cluster, "submit", *overrides, f"train.steps={saved + 5}", "--address", cluster["address"],
                        "--storage", str(storage), "--name", "again", "--follow")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "Resuming run 'again'" in again.stdout
    assert (run / f"checkpoint_{saved + 5:06d}").is_dir()
    # Continued from the checkpoint, not from scratch: one record per logged step, in order.
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(5, saved + 10, 5))
