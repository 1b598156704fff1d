"""``distgan serve`` on the shared local Ray: real Ray Serve replicas behind its HTTP proxy on 127.0.0.1.

Two applications in one Serve instance, as a team would run them: a conditional DCGAN's
sampler at /digits (one replica, a bearer token, batches that wait 200 ms to fill) and an
SRResNet upscaler at /sr (no token, on loopback). Concurrent clients get answers equal
to what the CLI computes alone, in batches bigger than any one request; bad requests in
the mix get their 4xx and the replica that refused them goes on serving; a replica
killed outright is replaced; the token appears in no Ray log.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distgan.launch.serve import ServeOptions, serve_generator
from distgan.serving import Router, ServedGenerator, ServeLimits
from distgan.serving.requests import parse_upscale
from distgan.tasks.super_resolution.upscale import upscale_to_uint8
from ports import free_port
from tiny_generators import save_tiny

pytestmark = pytest.mark.ray

TOKEN = "serve-e2e-" + "7f3a9c" * 6


def call(url: str, body: bytes = b"", token: str = "", content_type: str = "") -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body or None, method="POST" if body else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read(), answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(local_ray, tmp_path_factory):
    from ray import serve

    digits = save_tiny(tmp_path_factory.mktemp("digits"), "dcgan", conditional=True)
    sr = save_tiny(tmp_path_factory.mktemp("sr"), "srresnet")
    port = free_port()
    common = dict(host="127.0.0.1", port=port, limits=ServeLimits(max_n=16, max_body_bytes=200_000))
    try:
        apps = {"digits": serve_generator(digits, ServeOptions(route="/digits", max_batch=64, batch_wait_ms=200,
                                                               **common), token=TOKEN),
                "sr": serve_generator(sr, ServeOptions(route="/sr", tile=8, **common))}
        yield {"apps": apps, "digits": digits, "sr": sr}
    finally:
        serve.shutdown()


def test_concurrent_clients_get_the_cli_s_samples_in_shared_batches(served):
    url = served["apps"]["digits"].url
    assert url.startswith("http://127.0.0.1:")
    queries = [f"?n={1 + i % 4}&seed={i}&labels={i % 3}&format=npz" for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda q: call(url + q, token=TOKEN), queries))
    local = ServedGenerator.load(served["digits"])
    router = Router(local, ServeLimits(max_n=16))
    for query, (status, body, kind) in zip(queries, answers):
        assert status == 200 and kind == "application/octet-stream", body[:300]
        params = dict(p.split("=") for p in query[1:].split("&"))
        (alone,) = local.generate([router.route("GET", "/", params, {}, b"")])
        got, want = np.load(io.BytesIO(body)), np.load(io.BytesIO(alone))
        np.testing.assert_allclose(got["images"], want["images"], atol=1e-5)
        assert got["labels"].tolist() == [int(params["labels"])] * int(params["n"])
    status, body, _ = call(url + "/health", token=TOKEN)
    health = json.loads(body)
    assert status == 200 and health["family"] == "dcgan" and health["classes"] == ["0", "1", "2"]
    sizes = {int(k): v for k, v in health["batch_sizes"].items()}
    assert sum(k * v for k, v in sizes.items()) == sum(1 + i % 4 for i in range(12))
    assert max(sizes) > 4, f"no batch held more than one request's samples: {sizes}"
    status, body, kind = call(url + "?n=4&seed=1", token=TOKEN)  # a plain GET: a PNG grid, as a browser wants
    assert status == 200 and kind == "image/png" and Image.open(io.BytesIO(body)).size == (35, 35)


def test_bad_requests_get_4xx_and_the_replica_serves_on(served):
    url = served["apps"]["digits"].url
    pid = json.loads(call(url + "/health", token=TOKEN)[1])["pid"]
    cases = [(call(url + "?n=4"), 401), (call(url + "?n=4", token="not-the-token"), 401),
             (call(url + "?n=17", token=TOKEN), 400), (call(url + "?n=x", token=TOKEN), 400),
             (call(url + "?labels=9", token=TOKEN), 400), (call(url + "/nothing", token=TOKEN), 404),
             (call(url, b"{", TOKEN, "application/json"), 400),
             (call(url, b"x" * 200_001, TOKEN, "application/json"), 413)]
    for (status, body, kind), expected in cases:
        assert status == expected and kind == "application/json" and json.loads(body)["error"], (status, body)
    assert TOKEN not in repr([body for (_, body, _), _ in cases])
    status, body, _ = call(url + "/health", token=TOKEN)
    assert status == 200 and json.loads(body)["pid"] == pid, "the replica that refused them is still the one"
    sr = served["apps"]["sr"].url
    assert call(sr)[0] == 405 and call(sr, b"not an image")[0] == 400


def test_uploads_are_upscaled_as_the_cli_does_and_a_killed_replica_is_replaced(served):
    url = served["apps"]["sr"].url
    pixels = np.random.default_rng(0).integers(0, 256, (21, 13, 3), dtype=np.uint8)
    status, first, kind = call(url, png(pixels), content_type="image/png")
    assert status == 200 and kind == "image/png", first[:300]
    got = np.asarray(Image.open(io.BytesIO(first)))
    local = ServedGenerator.load(served["sr"])
    want = upscale_to_uint8(local.module, parse_upscale(png(pixels), 3, ServeLimits()).lr, 2, tile=8, overlap=16)
    assert got.shape == (42, 26, 3) and np.abs(got.astype(int) - want.astype(int)).max() <= 1

    before = json.loads(call(url + "/health")[1])["pid"]
    os.kill(before, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:  # Serve's controller notices the dead replica and starts another
        status, body, _ = call(url + "/health")
        if status == 200 and json.loads(body)["pid"] != before:
            break
        assert time.monotonic() < deadline, f"no new replica within 120 s (last answer {status})"
        time.sleep(1)
    assert call(url, png(pixels), content_type="image/png") == (200, first, "image/png")


def test_the_token_is_in_no_log(served, local_ray):
    logs = Path(local_ray._private.worker._global_node.get_session_dir_path()) / "logs"
    leaked = [p for p in logs.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked, leaked
