"""Load test of ``distgan serve`` on loopback: latency, throughput and the batch sizes reached, per task.

Starts an embedded Ray, serves two generators through one Serve proxy on 127.0.0.1 (a DCGAN sampler at
/digits, an SRResNet x4 upscaler at /sr; weights freshly initialised unless ``--digits``/``--sr`` name
trained ones: the cost does not depend on the weights), then for each task runs ``--clients`` concurrent
clients, each sending ``--requests`` requests back to back. One request in ``--bad-every`` is a bad one
(a wrong token, ``n`` over the limit, a path that does not exist, a non-image upload), which must get its
4xx; every other must get 200. Sample requests ask for ``--n`` samples at a random seed; upscale requests
send a ``--side`` px random RGB PNG.

    python benchmarks/serving.py [--clients 16] [--requests 20] [--n 4] [--side 64] [--replicas 1]
                                 [--max-batch 64] [--batch-wait-ms 10] [--bad-every 10]

Prints, per task: good requests, p50/p90/p99 latency (ms), requests/s and samples or megapixels/s over the
whole load, the batch sizes the replicas ran (from their health reports), and the status counts; then one
JSON line. Asserts nothing: the numbers are this machine's.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' tiny-generator writer

TOKEN = "benchmark-token-" + "5e" * 16


def call(url: str, body: bytes = b"", token: str = "") -> int:
    request = urllib.request.Request(url, data=body or None, method="POST" if body else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def export(folder: Path, family: str) -> Path:
    from dataclasses import asdict

    from distgan import models
    from distgan.config import ModelConfig
    from distgan.persist.export import save_generator

    if family == "dcgan":
        cfg, shape, extra = ModelConfig(family="dcgan", latent_dim=64, g_width=64), (1, 32, 32), {}
    else:
        cfg, shape, extra = ModelConfig(family="srresnet", g_width=64, blocks=16, scale=4), (3, 128, 128), {"scale": 4}
    torch.manual_seed(0)
    g = models.build_generator(cfg, shape).eval()
    save_generator(folder, g, {"model": asdict(cfg), "data_shape": list(shape), "num_classes": 0,
                               "task": models.MODELS.get(family).task, "step": 0, **extra})
    return folder


def load(url: str, make, clients: int, requests: int, bad_every: int) -> dict:
    """``clients`` threads x ``requests`` each; ``make(i)`` -> (url suffix, body, token, expected status)."""
    latencies, statuses, wrong = [], Counter(), []

    def client(c: int) -> None:
        for r in range(requests):
            i = c * requests + r
            suffix, body, token, expected = make(i, bad=bad_every > 0 and i % bad_every == bad_every - 1)
            start = time.perf_counter()
            status = call(url + suffix, body, token)
            if expected == 200:
                latencies.append(time.perf_counter() - start)
            statuses[status] += 1
            if status != expected:
                wrong.append((suffix, status, expected))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"good": len(latencies), "wall_s": wall, "p50_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * q[89], "p99_ms": 1000 * q[98], "requests_per_s": len(latencies) / wall,
            "statuses": dict(sorted(statuses.items())), "unexpected": wrong[:5]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--bad-every", type=int, default=10)
    parser.add_argument("--digits", help="a trained generation run to serve instead of fresh weights")
    parser.add_argument("--sr", help="a trained x4 super-resolution run to serve instead of fresh weights")
    args = parser.parse_args()

    import ray
    from ray import serve

    from distgan.launch.serve import ServeOptions, serve_generator
    from distgan.serving import ServeLimits
    from ports import free_port

    tmp = Path(tempfile.mkdtemp(prefix="distgan-serve-bench-"))
    sources = {"digits": args.digits or export(tmp / "digits", "dcgan"),
               "sr": args.sr or export(tmp / "sr", "srresnet")}
    ray.init(num_cpus=max(4, 2 * args.replicas + 1), include_dashboard=False, logging_level="ERROR")
    port = free_port()
    common = dict(port=port, replicas=args.replicas, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
                  limits=ServeLimits(max_n=min(64, args.max_batch)))
    apps = {"digits": serve_generator(sources["digits"], ServeOptions(route="/digits", **common), token=TOKEN),
            "sr": serve_generator(sources["sr"], ServeOptions(route="/sr", tile=128, **common))}
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (args.side, args.side, 3), dtype=np.uint8)).save(buf, format="PNG")
    image = buf.getvalue()

    def sample(i: int, bad: bool):
        if not bad:
            return f"?n={args.n}&seed={i}&format=npz", b"", TOKEN, 200
        return [(f"?n={args.n}", b"", "wrong", 401), ("?n=100000", b"", TOKEN, 400),
                ("/nothing", b"", TOKEN, 404)][i % 3]

    def upscale(i: int, bad: bool):
        return ("", b"not an image", "", 400) if bad else ("", image, "", 200)

    results = {}
    for task, make in (("digits", sample), ("sr", upscale)):
        call(apps[task].url + ("?n=1" if task == "digits" else ""), b"" if task == "digits" else image,
             TOKEN if task == "digits" else "")  # warm-up: the first forward pass allocates
        results[task] = load(apps[task].url, make, args.clients, args.requests, args.bad_every)
        health = json.loads(urllib.request.urlopen(urllib.request.Request(
            apps[task].url + "/health", headers={"Authorization": f"Bearer {TOKEN}"}), timeout=60).read())
        results[task]["batch_sizes"] = health["batch_sizes"]  # one replica's (the one that answered)
    serve.shutdown()
    ray.shutdown()

    print(f"{args.clients} clients x {args.requests} requests, 1 bad in {args.bad_every}; replicas "
          f"{args.replicas}, max batch {args.max_batch}, wait {args.batch_wait_ms} ms; torch threads "
          f"{torch.get_num_threads()}")
    for task, r in results.items():
        unit = f"{r['requests_per_s'] * args.n:.0f} samples/s" if task == "digits" else \
            f"{r['requests_per_s'] * (args.side * 4) ** 2 / 1e6:.2f} output MP/s"
        print(f"{task:7s} good {r['good']:4d}  p50 {r['p50_ms']:7.1f} ms  p90 {r['p90_ms']:7.1f} ms  "
              f"p99 {r['p99_ms']:7.1f} ms  {r['requests_per_s']:6.1f} req/s  {unit}  statuses {r['statuses']}  "
              f"batch sizes {r['batch_sizes']}" + (f"  UNEXPECTED {r['unexpected']}" if r["unexpected"] else ""))
    print(json.dumps({"args": vars(args), "results": results}))


if __name__ == "__main__":
    main()
