"""From an HTTP request to work for the model, or to a 4xx that says why not; no server framework here.

The Ray Serve deployment (``distgan.launch.serve``) hands each request's method, path
below the route, query, headers and body to ``Router.route``, which checks the token
and the limits and returns either a ``Reply`` (health, or an error) or a job for the
model's batch queue; ``Router.answer`` wraps the model's bytes. Routes, below the
application's route (``--route``):

- ``GET|POST /``: samples (generation) or ``POST /``: an upscaled image (super-resolution);
- ``GET /health``: the model, its step and metrics, and the batch sizes served.

The token, where one is set, is a bearer token; the router keeps only its SHA-256 and
compares digests in constant time, so the token itself never reaches a replica's
memory, its logs or Ray's state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Union

from distgan.serving.model import ServedGenerator
from distgan.serving.requests import (FORMATS, GenerateRequest, RequestError, ServeLimits, UpscaleRequest,
                                      generate_params, parse_generate, parse_upscale)


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


def json_reply(status: int, payload: dict, headers: Optional[dict] = None) -> Reply:
    return Reply(status, (json.dumps(payload) + "\n").encode(), "application/json", headers or {})


def error_reply(error: RequestError) -> Reply:
    headers = {"WWW-Authenticate": 'Bearer realm="distgan"'} if error.status == 401 else {}
    return json_reply(error.status, {"error": str(error)}, headers)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


Job = Union[GenerateRequest, UpscaleRequest]


class Router:
    def __init__(self, model: ServedGenerator, limits: ServeLimits, token_sha256: Optional[str] = None):
        self.model = model
        self.limits = limits
        self.token_sha256 = token_sha256

    def authorize(self, headers: Mapping[str, str]) -> None:
        if self.token_sha256 is None:
            return
        scheme, _, presented = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            raise RequestError(401, "this server needs a bearer token: send 'Authorization: Bearer TOKEN'")
        if not hmac.compare_digest(token_digest(presented.strip()), self.token_sha256):
            raise RequestError(401, "the bearer token is not this server's")

    def route(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
              body: bytes) -> Union[Reply, Job]:
        """A ``Reply`` to send as it is, or a job for the model. ``headers`` keys are lower case."""
        try:
            self.authorize(headers)
            if len(body) > self.limits.max_body_bytes:
                raise RequestError(413, f"the body is {len(body)} bytes; this server takes at most "
                                        f"{self.limits.max_body_bytes}")
            endpoint = path.strip("/")
            if endpoint == "health":
                _allow(method, ("GET",), "health")
                return json_reply(200, self.model.health())
            if endpoint:
                raise RequestError(404, f"no route {path!r} here: use / for "
                                        f"{'samples' if self.model.generates else 'upscaling'} and /health")
            content_type = (headers.get("content-type") or "").lower()
            if self.model.generates:
                _allow(method, ("GET", "POST"), "samples")
                return parse_generate(generate_params(query, body, content_type), self.model.meta,
                                      self.model.style_based, self.limits)
            _allow(method, ("POST",), "upscaling (send the image file as the body)")
            if query:
                raise RequestError(400, f"unknown parameter {sorted(query)[0]!r}: upscaling takes the image alone")
            return parse_upscale(body, int(self.model.meta["data_shape"][0]), self.limits)
        except RequestError as exc:
            return error_reply(exc)

    @staticmethod
    def answer(job: Job, payload: bytes) -> Reply:
        if isinstance(job, GenerateRequest):
            return Reply(200, payload, FORMATS[job.format])
        return Reply(200, payload, "image/png")


def _allow(method: str, allowed: tuple[str, ...], what: str) -> None:
    if method.upper() not in allowed:
        raise RequestError(405, f"{method} is not allowed for {what}; use {' or '.join(allowed)}")
