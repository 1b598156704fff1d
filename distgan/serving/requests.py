"""What a client may ask of a served generator, checked before any work: bad input is a 4xx naming the parameter.

A request for samples is a query string (``GET /digits?n=8&seed=3&labels=2``, what curl
and a browser send) or the same keys as a JSON object in a POST body. A request to
upscale is the image file itself as the POST body. Every limit (``ServeLimits``) is
checked here: the body's size before it is read whole, an image's pixel count from
its header before it is decoded (a small PNG can declare a gigapixel canvas), ``n``
before a latent is drawn. Nothing here knows of Ray or HTTP servers.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import torch
from PIL import Image

from distgan.config import ConfigError
from distgan.tasks.generation.sampling import Draw, parse_labels
from distgan.tasks.super_resolution.upscale import UpscaleError, read_image


class RequestError(Exception):
    """A request the server refuses: ``status`` is the HTTP status (4xx), the message says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServeLimits:
    max_n: int = 64
    """Samples one request may ask for."""
    max_pixels: int = 4_000_000
    """Pixels of an image to upscale (its input side): 2000x2000. Its output is ``scale**2`` times that."""
    max_body_bytes: int = 20 * 2**20
    """Bytes of a request body (an uploaded image, a JSON object)."""
    timeout_s: float = 60.0
    """Seconds a request may take end to end (queue, batch wait and compute) before the server gives up."""

    def check(self) -> None:
        for key in ("max_n", "max_pixels", "max_body_bytes"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be a whole number >= 1, got {getattr(self, key)!r}")
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f"timeout_s: must be a number of seconds > 0, got {self.timeout_s!r}")


FORMATS = {"png": "image/png", "npz": "application/octet-stream"}
GENERATE_KEYS = ("n", "seed", "labels", "truncation", "format")


@dataclass(frozen=True)
class GenerateRequest:
    draw: Draw
    format: str
    """``png`` (a grid of the samples) or ``npz`` (``images`` float32 in [0, 1], and ``labels``)."""


def _integer(params: Mapping[str, object], key: str, default: int) -> int:
    value = params.get(key, default)
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise RequestError(400, f"{key}: expected a whole number, got {value!r}") from None


def generate_params(query: Mapping[str, str], body: bytes, content_type: str) -> dict:
    """The request's parameters: the query string's, or a JSON object's when the body is one (POST)."""
    if not body:
        return dict(query)
    if "json" not in content_type:
        raise RequestError(415, f"a request for samples sends its parameters as a query string or a JSON object "
                                f"(Content-Type: application/json), not {content_type or 'an untyped body'}")
    try:
        params = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise RequestError(400, f"the JSON body must be an object of {', '.join(GENERATE_KEYS)}, "
                                f"got a {type(params).__name__}")
    return {**query, **params}


def parse_generate(params: Mapping[str, object], meta: dict, style_based: bool, limits: ServeLimits
                   ) -> GenerateRequest:
    unknown = sorted(set(params) - set(GENERATE_KEYS))
    if unknown:
        raise RequestError(400, f"unknown parameter {unknown[0]!r}; a request for samples takes "
                                f"{', '.join(GENERATE_KEYS)}")
    n = _integer(params, "n", 16)
    if not 1 <= n <= limits.max_n:
        raise RequestError(400, f"n: must be between 1 and {limits.max_n} (this server's limit), got {n}")
    seed = _integer(params, "seed", 0)
    if not 0 <= seed < 2**63:
        raise RequestError(400, f"seed: must be between 0 and 2**63 - 1, got {seed}")
    fmt = str(params.get("format", "png"))
    if fmt not in FORMATS:
        raise RequestError(400, f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    labels = params.get("labels")
    if isinstance(labels, list):
        labels = ",".join(str(v) for v in labels)
    try:
        parsed = parse_labels(None if labels is None else str(labels), meta, n, key="labels")
    except ConfigError as exc:
        raise RequestError(400, str(exc)) from None
    truncation = params.get("truncation")
    if truncation is not None:
        if not style_based:
            raise RequestError(400, "truncation: this generator has no mapping network (only model.family="
                                    "stylegan2 has); leave truncation out")
        try:
            truncation = float(truncation)
        except (TypeError, ValueError):
            raise RequestError(400, f"truncation: expected a number, got {truncation!r}") from None
        if not (math.isfinite(truncation) and -2.0 <= truncation <= 2.0):
            raise RequestError(400, f"truncation: expected a psi between -2 and 2 (1 leaves w as it is), "
                                    f"got {truncation}")
    return GenerateRequest(Draw(n, seed, parsed, truncation), fmt)


@dataclass(frozen=True)
class UpscaleRequest:
    lr: torch.Tensor
    """``[1, C, H, W]`` in [-1, 1], as ``distgan upscale`` feeds G."""
    alpha: Optional[np.ndarray]
    """The upload's alpha channel (uint8 ``[H, W]``), resized bicubically onto the output; None without one."""


def parse_upscale(body: bytes, channels: int, limits: ServeLimits) -> UpscaleRequest:
    """The uploaded PNG/JPEG, its pixel count checked from the header before anything is decoded."""
    if not body:
        raise RequestError(400, "upscaling takes the image file as the request body (POST); the body is empty")
    try:
        with Image.open(io.BytesIO(body)) as header:  # reads the header only
            width, height = header.size
            kind = header.format
    except Image.DecompressionBombError as exc:  # Pillow's own ceiling, far above any sensible max_pixels
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        raise RequestError(413, f"the image declares {declared.group(1) if declared else 'too many'} pixels; this "
                                f"server upscales at most {limits.max_pixels} pixels per image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(400, f"the body is not a readable PNG or JPEG image ({exc})") from None
    if kind not in ("PNG", "JPEG"):
        raise RequestError(415, f"upscaling takes PNG or JPEG images, got {kind}")
    if width * height > limits.max_pixels:
        raise RequestError(413, f"the image is {width}x{height} = {width * height} pixels; this server upscales "
                                f"at most {limits.max_pixels} pixels per image")
    try:
        pixels, alpha = read_image(io.BytesIO(body), channels)
    except UpscaleError as exc:  # truncated data past a valid header
        raise RequestError(400, f"the image could not be decoded: {str(exc).split(': ', 1)[-1]}") from None
    lr = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return UpscaleRequest(lr, alpha)
