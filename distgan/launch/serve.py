"""``distgan serve``: a trained generator behind HTTP on Ray Serve, batched, replicated, safe by default.

Each replica holds the generator (on a GPU where the cluster has them) and a
``distgan.serving.Router``. Requests queue in Ray Serve's ``serve.batch``: a batch
closes at ``max_batch`` samples (generation) or images (super-resolution), or after
``batch_wait_ms``, and runs in shared forward passes on a worker thread, so the
replica keeps taking requests meanwhile. ``replicas: auto`` lets Serve add replicas
while requests queue (``TARGET_ONGOING`` per replica) up to ``max_replicas``; a
replica that dies is replaced by Serve's controller.

Safe by default: the HTTP proxy binds 127.0.0.1; binding any other address needs a
token, which only the driver ever holds (the replicas get its SHA-256). Limits
(``ServeLimits``) bound the body, the image pixels, ``n`` and each request's time.
The generator's files are read here and shipped to the replicas through Ray, so a
remote cluster needs no shared storage to serve a local run.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

from distgan.config import ConfigError
from distgan.launch.loopback import keep_embedded_ray_on_loopback
from distgan.persist.export import META, find_generator
from distgan.serving import RequestError, Router, ServedGenerator, ServeLimits, exported_scores, token_digest
from distgan.serving.requests import GenerateRequest
from distgan.serving.router import Reply, error_reply

TOKEN_ENV = "DISTGAN_SERVE_TOKEN"
MAX_UPSCALE_BATCH = 8
"""Images in one upscaling batch at most, whatever ``max_batch`` says (it counts samples for generation)."""
TARGET_ONGOING = 8
"""Requests in flight per replica that ``replicas: auto`` aims for: past it Serve adds replicas."""
PARSE_THREADS = 2
"""Threads per replica that parse request bodies (decode images, read JSON), off the event loop."""


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    """Address the HTTP proxy binds; anything but loopback needs a token."""
    port: int = 8000
    route: str = "/"
    """Path the application answers under (``/digits`` -> ``/digits`` and ``/digits/health``)."""
    name: Optional[str] = None
    """The Serve application's name (default: from the route); serving again under a name replaces it."""
    replicas: Union[int, str] = 1
    """Replicas, or ``auto``: 1 to ``max_replicas`` by queue length."""
    max_replicas: int = 4
    max_batch: int = 64
    """Samples (generation) or images (super-resolution) in one batch."""
    batch_wait_ms: float = 10.0
    """How long a batch waits to fill before it runs anyway."""
    tile: int = 128
    """Input tile side for upscaling, as ``distgan upscale --tile`` (0: whole images)."""
    use_gpu: Union[bool, str] = "auto"
    limits: ServeLimits = field(default_factory=ServeLimits)

    @property
    def app_name(self) -> str:
        return self.name or (self.route.strip("/").replace("/", "-") or "distgan")

    def check(self, generates: bool) -> None:
        self.limits.check()
        if not self.route.startswith("/"):
            raise ConfigError(f"--route {self.route!r}: must start with / (e.g. /digits)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port {self.port}: expected 1-65535")
        if self.replicas != "auto" and (not isinstance(self.replicas, int) or self.replicas < 1):
            raise ConfigError(f"--replicas {self.replicas!r}: expected a number >= 1 or auto")
        if self.max_replicas < 1 or self.max_batch < 1 or self.batch_wait_ms < 0 or self.tile < 0:
            raise ConfigError("--max-replicas and --max-batch must be >= 1, --batch-wait-ms and --tile >= 0")
        if generates and self.limits.max_n > self.max_batch:
            raise ConfigError(f"--max-n {self.limits.max_n} exceeds --max-batch {self.max_batch}: a batch holds "
                              f"at most max_batch samples, so one request may not ask for more")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


@dataclass(frozen=True)
class Served:
    url: str
    app_name: str
    generates: bool
    """Samples (a generation task); otherwise upscaling."""

    def stop(self) -> None:
        from ray import serve  # Ray Serve only once something is served: importing distgan stays light

        serve.delete(self.app_name)


def _batch_size(jobs: list) -> int:
    return sum(j.draw.n if isinstance(j, GenerateRequest) else 1 for j in jobs)


def _deployment():
    """The replica class, decorated where Ray Serve is imported (importing distgan never imports Serve)."""
    from ray import serve  # Serve and its web stack load only when a generator is served
    from starlette.requests import Request
    from starlette.responses import Response

    @serve.deployment(max_ongoing_requests=64, health_check_period_s=5)
    class GeneratorServer:
        def __init__(self, files: dict[str, bytes], scores: dict, options: dict, token_sha256: Optional[str]):
            import torch  # in the replica's process, which the driver's imports do not reach

            folder = Path(tempfile.mkdtemp(prefix="distgan-serve-"))
            try:
                for name, data in files.items():
                    (folder / name).write_bytes(data)
                gpu = options["use_gpu"] and torch.cuda.is_available()
                model = ServedGenerator.load(folder, "cuda" if gpu else "cpu", tile=options["tile"], metrics=scores)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            limits = ServeLimits(**options["limits"])
            self.router = Router(model, limits, token_sha256)
            # An upscaling batch holds its images' outputs at once (an 8 MP output is 24 MB): a few, not 64.
            self.run.set_max_batch_size(options["max_batch"] if model.generates
                                        else min(options["max_batch"], MAX_UPSCALE_BATCH))
            self.run.set_batch_wait_timeout_s(options["batch_wait_ms"] / 1000)
            # Requests are parsed here, not in the default executor the batches run in: a queue of uploads to
            # decode never delays a batch already formed. Few threads: the replica has 1 CPU (the decoders
            # release the GIL, so parsing still overlaps the loop and a batch), and each image decoded at once
            # holds up to 12 bytes per pixel as a float tensor.
            self.parse_pool = ThreadPoolExecutor(max_workers=PARSE_THREADS, thread_name_prefix="distgan-parse")

        async def __call__(self, request: Request) -> Response:
            root = request.scope.get("root_path", "")
            path = request.url.path[len(root):] if request.url.path.startswith(root) else request.url.path
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                body = await _read_body(request, self.router.limits.max_body_bytes)
            except RequestError as exc:
                return _response(error_reply(exc))
            job = await self._route(request.method, path, dict(request.query_params), headers, body)
            if isinstance(job, Reply):  # health, or a refusal
                return _response(job)
            return _response(self.router.answer(job, await self.run(job)))

        async def _route(self, method: str, path: str, query: dict, headers: dict, body: bytes):
            """``Router.route`` off the event loop when there is a body to parse: up to max_body_bytes of JSON, or
            an image to decode (a few hundred ms at max_pixels), which on the loop would stall /health and every
            other request of this replica meanwhile. Without a body (health, a query string) it is microseconds."""
            if not body:
                return self.router.route(method, path, query, headers, body)
            return await asyncio.get_running_loop().run_in_executor(
                self.parse_pool, self.router.route, method, path, query, headers, body)

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01, batch_size_fn=_batch_size)
        async def run(self, jobs: list) -> list[bytes]:
            model = self.router.model
            work = model.generate if model.generates else model.upscale
            # On a worker thread: the event loop keeps taking requests for the next batch meanwhile.
            return await asyncio.get_running_loop().run_in_executor(None, work, jobs)

    def _response(reply) -> Response:
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=reply.headers)

    async def _read_body(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the body is {declared} bytes; this server takes at most {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body is over {limit} bytes, this server's limit")
            chunks.append(chunk)
        return b"".join(chunks)

    return GeneratorServer


def read_token(token_file: Optional[str]) -> Optional[str]:
    """The token from ``--token-file``, else ``$DISTGAN_SERVE_TOKEN``, else None."""
    if token_file is not None:
        path = Path(token_file)
        if not path.is_file():
            raise ConfigError(f"--token-file {token_file}: no such file")
        return path.read_text()
    return os.environ.get(TOKEN_ENV)


def resolve_token(host: str, token: Optional[str]) -> Optional[str]:
    """The token to require: the one given, or none on loopback; beyond loopback one is mandatory."""
    if token is not None and not token.strip():
        raise ConfigError("the serving token is empty; put a long random string in the token file or "
                          f"${TOKEN_ENV}")
    if token is None and not is_loopback(host):
        raise ConfigError(f"--host {host}: binding beyond loopback needs a bearer token; give --token-file FILE or "
                          f"set ${TOKEN_ENV} (clients then send 'Authorization: Bearer TOKEN')")
    return None if token is None else token.strip()


def serve_generator(source: Union[str, Path], options: ServeOptions = ServeOptions(), token: Optional[str] = None,
                    address: Optional[str] = None) -> Served:
    """Deploy ``source`` (a run, a checkpoint, a generator file, or any of them under a URI) and return at once;
    the application runs until ``Served.stop()`` or Serve shuts down."""
    keep_embedded_ray_on_loopback(address)  # before ray is imported: its switch is read at import
    import ray  # Ray starts only after every check has passed
    from ray import serve

    token = resolve_token(options.host, token)
    weights = find_generator(source)
    files = {weights.name: weights.read_bytes(), META: weights.with_name(META).read_bytes()}
    model = ServedGenerator.load(weights)  # checked here, where the error reaches the user
    options.check(model.generates)
    if not ray.is_initialized() and address:
        ray.init(address=address, logging_level="ERROR")
    elif not ray.is_initialized():  # an embedded Ray: its servers on loopback, as distgan train's are
        ray.init(logging_level="ERROR", _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1")
    use_gpu = options.use_gpu if options.use_gpu != "auto" else ray.cluster_resources().get("GPU", 0) > 0
    serve.start(http_options={"host": options.host, "port": options.port,
                              "request_timeout_s": options.limits.timeout_s})
    scaling = ({"autoscaling_config": {"min_replicas": 1, "max_replicas": options.max_replicas,
                                       "target_ongoing_requests": TARGET_ONGOING}}
               if options.replicas == "auto" else {"num_replicas": options.replicas})
    app = _deployment().options(name=options.app_name, ray_actor_options={"num_cpus": 1, "num_gpus": int(use_gpu)},
                                **scaling).bind(files, exported_scores(weights, model.meta.get("step")),
                                                {**asdict(options), "use_gpu": bool(use_gpu)},
                                                None if token is None else token_digest(token))
    from ray.serve.exceptions import RayServeException  # with Serve itself: only once serving

    try:
        serve.run(app, name=options.app_name, route_prefix=options.route)
    except RayServeException as exc:  # another application's route, say: the user's to change
        raise ConfigError(f"Serve did not deploy {options.app_name!r} at --route {options.route}: "
                          f"{str(exc).splitlines()[0]}") from None
    host = f"[{options.host}]" if ":" in options.host else options.host
    return Served(f"http://{host}:{options.port}{options.route.rstrip('/')}", options.app_name, model.generates)
