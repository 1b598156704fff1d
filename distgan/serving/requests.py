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
from distgan.data.folder import named
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


def _shown(value: object) -> str:
    """``value`` for an error message: short, and never the repr of a (maybe deeply nested) JSON array or object."""
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    if isinstance(value, str) and len(value) > 36:
        return f"{value[:36]!r}..."
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}..."


def _integer(params: Mapping[str, object], key: str, default: int) -> int:
    value = params.get(key, default)
    if isinstance(value, str):
        # ASCII decimal only, as the docs say: int() also reads '٣' (3) and '1_000', and a string of over 4300
        # digits makes it raise. 19 digits hold every seed (< 2**63); no limit here is longer.
        if not re.fullmatch(r"-?[0-9]+", value.strip()):
            raise RequestError(400, f"{key}: expected a whole number, got {_shown(value)}")
        if len(value.strip().lstrip("-")) > 19:
            raise RequestError(400, f"{key}: expected a whole number of at most 19 digits, got {_shown(value)}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):  # is_integer() is False for inf and nan
        raise RequestError(400, f"{key}: expected a whole number, got {_shown(value)}")
    return int(value)


def _number(params: Mapping[str, object], key: str) -> float:
    value = params[key]
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise TypeError
        if isinstance(value, str) and not value.isascii():  # float() reads '٣' as 3.0: decimal ASCII only
            raise ValueError
        return float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON integer of over ~308 digits
        raise RequestError(400, f"{key}: expected a number, got {_shown(value)}") from None


def generate_params(query: Mapping[str, str], body: bytes, content_type: str) -> dict:
    """The request's parameters: the query string's, or a JSON object's when the body is one (POST)."""
    if not body:
        return dict(query)
    if "json" not in content_type:
        raise RequestError(415, f"a request for samples sends its parameters as a query string or a JSON object "
                                f"(Content-Type: application/json), not {content_type or 'an untyped body'}")
    try:
        params = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # before ValueError: both are ValueErrors
        raise RequestError(400, f"the JSON body is not valid JSON ({exc})") from None
    except ValueError as exc:  # an integer of over 4300 digits (Python's limit on int() of a string)
        raise RequestError(400, f"the JSON body holds a number too long to read ({exc})") from None
    except RecursionError:  # arrays or objects nested about 1000 deep
        raise RequestError(400, "the JSON body nests arrays or objects too deeply") from None
    if not isinstance(params, dict):
        raise RequestError(400, f"the JSON body must be an object of {', '.join(GENERATE_KEYS)}, "
                                f"got a {type(params).__name__}")
    return {**query, **params}


def _labels_text(labels: object, max_n: int) -> Optional[str]:
    """The ``labels`` parameter as ``parse_labels`` reads it (a comma list), its entries counted first: a 20 MiB
    body of ten million labels is refused before any entry is converted, as a query string of them is."""
    if labels is None:
        return None
    if isinstance(labels, list):
        count = len(labels)
    elif isinstance(labels, (str, int)) and not isinstance(labels, bool):
        labels = str(labels)
        count = labels.count(",") + 1  # counted, not split: a split of a huge list is the cost being refused
    else:
        raise RequestError(400, f"labels: expected 'all' or class indices or names, got {_shown(labels)}")
    if count > max_n:
        raise RequestError(400, f"labels: at most {max_n} classes per request (this server's limit on n), "
                                f"got {count}")
    if isinstance(labels, str):
        return labels
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in labels):
        raise RequestError(400, "labels: each entry must be a class index or name")
    return ",".join(str(v) for v in labels)


def parse_generate(params: Mapping[str, object], meta: dict, style_based: bool, limits: ServeLimits
                   ) -> GenerateRequest:
    unknown = sorted(set(params) - set(GENERATE_KEYS))
    if unknown:
        raise RequestError(400, f"unknown parameter {_shown(unknown[0])}; a request for samples takes "
                                f"{', '.join(GENERATE_KEYS)}")
    n = _integer(params, "n", 16)
    if not 1 <= n <= limits.max_n:
        raise RequestError(400, f"n: must be between 1 and {limits.max_n} (this server's limit), got {_shown(n)}")
    seed = _integer(params, "seed", 0)
    if not 0 <= seed < 2**63:
        raise RequestError(400, f"seed: must be between 0 and 2**63 - 1, got {_shown(seed)}")
    fmt = params.get("format", "png")
    if not (isinstance(fmt, str) and fmt in FORMATS):
        raise RequestError(400, f"format: expected one of {', '.join(FORMATS)}, got {_shown(fmt)}")
    try:
        labels = parse_labels(_labels_text(params.get("labels"), limits.max_n), meta, n, key="labels")
    except ConfigError as exc:
        raise RequestError(400, str(exc)) from None
    truncation = None
    if params.get("truncation") is not None:
        if not style_based:
            raise RequestError(400, "truncation: this generator has no mapping network (only model.family="
                                    "stylegan2 has); leave truncation out")
        truncation = _number(params, "truncation")
        if not (math.isfinite(truncation) and -2.0 <= truncation <= 2.0):
            raise RequestError(400, f"truncation: expected a psi between -2 and 2 (1 leaves w as it is), "
                                    f"got {truncation}")
    return GenerateRequest(Draw(n, seed, labels, truncation), fmt)


@dataclass(frozen=True)
class UpscaleRequest:
    lr: torch.Tensor
    """``[1, C, H, W]`` in [-1, 1], as ``distgan upscale`` feeds G."""
    alpha: Optional[np.ndarray]
    """The upload's alpha channel (uint8 ``[H, W]``), resized bicubically onto the output; None without one."""


MAX_JPEG_SCANS = 100
"""Scans (SOS markers) a JPEG may hold. Baseline JPEGs have 1 (3 if not interleaved), libjpeg's progressive ones
6 (grey) or 10 (colour); an MPO (a phone's photo with a gain map or depth map) adds its frames' few. But every
scan of a progressive JPEG is a pass over the whole image's coefficients, however few bytes it takes: 52 KB
repeating one refinement scan 2000 times declares 2000x2000 pixels and decodes for seconds, 20 MiB of them
for about an hour (measured here: 2.2 ms per scan at 4 MP). 100 leaves every encoder's output room and
bounds a decode at max_pixels to about a third of a second."""


def _check_scans(body: bytes) -> None:
    """Refuse a JPEG with more than ``MAX_JPEG_SCANS`` scans, counted before anything is decoded. FF DA is the
    SOS marker, and entropy-coded data never holds it (an FF there is followed by 00 or a restart marker), so
    the count is at least the scans; bytes of an EXIF thumbnail or an ICC profile can only add to it."""
    scans = body.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise RequestError(400, f"the JPEG has {scans} scans; this server decodes at most {MAX_JPEG_SCANS} (a "
                                f"progressive JPEG has about 10, and each scan is a pass over the whole image)")


def parse_upscale(body: bytes, channels: int, limits: ServeLimits) -> UpscaleRequest:
    """The uploaded PNG/JPEG, its pixel count (and a JPEG's scans) checked before anything is decoded. Pillow
    names a JPEG with an MPF segment (a phone's gain map or depth map: Ultra HDR, Samsung) ``MPO``: it is a JPEG,
    and ``read_image`` decodes its first frame, the photo, as ``distgan upscale`` does."""
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
        raise RequestError(400, f"the body is not a readable PNG or JPEG image ({named(str(exc), 'the body')})") from None
    if kind not in ("PNG", "JPEG", "MPO"):
        raise RequestError(415, f"upscaling takes PNG or JPEG images, got {kind}")
    if width * height > limits.max_pixels:
        raise RequestError(413, f"the image is {width}x{height} = {width * height} pixels; this server upscales "
                                f"at most {limits.max_pixels} pixels per image")
    if kind in ("JPEG", "MPO"):
        _check_scans(body)
    try:
        pixels, alpha = read_image(io.BytesIO(body), channels)
    except UpscaleError as exc:  # truncated data past a valid header
        raise RequestError(400, f"the image could not be decoded: {named(str(exc).split(': ', 1)[-1], 'the body')}"
                           ) from None
    lr = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return UpscaleRequest(lr, alpha)
