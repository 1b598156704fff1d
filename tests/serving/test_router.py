"""The serving router in-process (no Ray, no HTTP server): routes, the bearer token, every limit, and each bad
request answered with the 4xx that names what to change."""

from __future__ import annotations

import io
import json
import zlib

import numpy as np
import pytest
from PIL import Image

from distgan.serving import Router, ServedGenerator, ServeLimits, token_digest
from distgan.serving.requests import MAX_JPEG_SCANS, GenerateRequest, RequestError, UpscaleRequest, parse_generate
from tiny_generators import save_tiny

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    return ServedGenerator.load(save_tiny(tmp_path_factory.mktemp("dcgan"), "dcgan", conditional=True))


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory):
    return ServedGenerator.load(save_tiny(tmp_path_factory.mktemp("srresnet"), "srresnet"), tile=8)


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), 128).save(buf, format="PNG")
    return buf.getvalue()


def declared_size(png_file: bytes, width: int, height: int) -> bytes:
    """The PNG with its header (IHDR, CRC fixed) declaring another size: what a decompression bomb looks like."""
    start = png_file.index(b"IHDR")
    fields = (width.to_bytes(4, "big") + height.to_bytes(4, "big") + png_file[start + 12:start + 17])
    chunk = b"IHDR" + fields
    return png_file[:start] + chunk + zlib.crc32(chunk).to_bytes(4, "big") + png_file[start + 21:]


def error(reply) -> tuple[int, str]:
    return reply.status, json.loads(reply.body)["error"]


def test_a_query_string_and_a_json_body_ask_for_the_same_samples(conditional):
    router = Router(conditional, ServeLimits())
    by_query = router.route("GET", "/", {"n": "5", "seed": "7", "labels": "2,0", "format": "npz"}, {}, b"")
    by_json = router.route("POST", "", {}, {"content-type": "application/json"},
                           json.dumps({"n": 5, "seed": 7, "labels": [2, 0], "format": "npz"}).encode())
    assert isinstance(by_query, GenerateRequest) and by_query.format == "npz"
    assert by_query.draw.n == by_json.draw.n == 5 and by_query.draw.seed == by_json.draw.seed == 7
    assert by_query.draw.labels.tolist() == by_json.draw.labels.tolist() == [2, 0, 2, 0, 2]
    default = router.route("GET", "/", {}, {}, b"")
    assert default.draw.n == 16 and default.format == "png" and default.draw.labels.tolist()[:3] == [0, 1, 2]


@pytest.mark.parametrize("query, status, needle", [
    ({"n": "65"}, 400, "n: must be between 1 and 64"),
    ({"n": "0"}, 400, "n: must be between 1"),
    ({"n": "two"}, 400, "n: expected a whole number, got 'two'"),
    ({"n": "1.5"}, 400, "n: expected a whole number"),
    ({"seed": "-1"}, 400, "seed: must be between 0"),
    ({"labels": "7"}, 400, "labels: '7' is not a class of this generator"),
    ({"format": "gif"}, 400, "format: expected one of png, npz"),
    ({"truncation": "0.5"}, 400, "truncation: this generator has no mapping network"),
    ({"size": "3"}, 400, "unknown parameter 'size'"),
])
def test_bad_sample_requests_get_a_4xx_naming_the_parameter(conditional, query, status, needle):
    got_status, message = error(Router(conditional, ServeLimits()).route("GET", "/", query, {}, b""))
    assert got_status == status and needle in message, message


def test_bodies_that_are_not_a_json_object_are_refused(conditional):
    router = Router(conditional, ServeLimits())
    assert error(router.route("POST", "/", {}, {"content-type": "text/plain"}, b"n=3"))[0] == 415
    status, message = error(router.route("POST", "/", {}, {"content-type": "application/json"}, b"{n: 3"))
    assert status == 400 and "not valid JSON" in message
    status, message = error(router.route("POST", "/", {}, {"content-type": "application/json"}, b"[1, 2]"))
    assert status == 400 and "must be an object" in message


def test_routes_and_methods(conditional, upscaler):
    router = Router(conditional, ServeLimits())
    health = router.route("GET", "/health", {}, {}, b"")
    assert health.status == 200 and json.loads(health.body)["task"] == "generation"
    assert error(router.route("DELETE", "/", {}, {}, b""))[0] == 405
    assert error(router.route("POST", "/health", {}, {}, b""))[0] == 405
    status, message = error(router.route("GET", "/samples", {}, {}, b""))
    assert status == 404 and "use / for samples and /health" in message
    sr = Router(upscaler, ServeLimits())
    status, message = error(sr.route("GET", "/", {}, {}, b""))
    assert status == 405 and "send the image file as the body" in message
    assert error(sr.route("POST", "/", {"n": "3"}, {}, png(8, 8)))[0] == 400


def test_the_token_is_required_and_compared_by_digest(conditional):
    router = Router(conditional, ServeLimits(), token_digest(TOKEN))
    assert TOKEN not in repr(vars(router)), "the router keeps the digest, never the token"
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"},
                    {"authorization": "Bearer "}):
        reply = router.route("GET", "/health", {}, headers, b"")
        assert reply.status == 401 and reply.headers["WWW-Authenticate"].startswith("Bearer"), headers
        assert TOKEN not in reply.body.decode()
    assert router.route("GET", "/health", {}, {"authorization": f"Bearer {TOKEN}"}, b"").status == 200
    assert isinstance(router.route("GET", "/", {"n": "2"}, {"authorization": f"bearer {TOKEN}"}, b""),
                      GenerateRequest)


def test_upscale_limits_are_checked_before_decoding(upscaler):
    router = Router(upscaler, ServeLimits(max_pixels=64 * 64, max_body_bytes=50_000))
    job = router.route("POST", "/", {}, {"content-type": "image/png"}, png(20, 10))
    assert isinstance(job, UpscaleRequest) and tuple(job.lr.shape) == (1, 3, 10, 20)
    status, message = error(router.route("POST", "/", {}, {}, png(65, 64)))
    assert status == 413 and "65x64 = 4160 pixels" in message and "at most 4096" in message
    # A decompression bomb: a tiny file whose header declares 30000 x 30000 pixels, refused from the header.
    bomb = declared_size(png(1, 1), 30000, 30000)
    status, message = error(router.route("POST", "/", {}, {}, bomb))
    assert len(bomb) < 100 and status == 413 and "900000000 pixels" in message, message
    status, message = error(router.route("POST", "/", {}, {}, b"x" * 50_001))
    assert status == 413 and "50001 bytes" in message
    status, message = error(router.route("POST", "/", {}, {}, b"not an image"))
    assert status == 400 and "cannot identify image file 'the body'" in message and "BytesIO" not in message
    assert error(router.route("POST", "/", {}, {}, b""))[0] == 400
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    assert error(router.route("POST", "/", {}, {}, gif.getvalue()))[0] == 415
    truncated = png(32, 32)[:-30]
    assert error(router.route("POST", "/", {}, {}, truncated))[0] == 400


@pytest.mark.parametrize("limits, key", [(dict(max_n=0), "max_n"), (dict(max_pixels=-1), "max_pixels"),
                                         (dict(timeout_s=0), "timeout_s"), (dict(max_body_bytes=1.5), "max_body")])
def test_bad_limits_are_named(limits, key):
    with pytest.raises(Exception, match=key):
        ServeLimits(**limits).check()


def test_a_phone_jpeg_with_an_mpf_segment_is_upscaled_as_a_jpeg(upscaler, tmp_path):
    # Pixel Ultra HDR and Samsung photos carry a gain map or depth map as a second frame; Pillow calls them MPO.
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (16, 12), (200, 30, 60)).save(path, format="MPO", save_all=True,
                                                   append_images=[Image.new("RGB", (16, 12), (9, 9, 9))])
    assert Image.open(path).format == "MPO"
    job = Router(upscaler, ServeLimits()).route("POST", "/", {}, {"content-type": "image/jpeg"}, path.read_bytes())
    assert isinstance(job, UpscaleRequest) and tuple(job.lr.shape) == (1, 3, 12, 16)
    colour = ((job.lr[0].mean(dim=(1, 2)) + 1) * 127.5).tolist()  # the photo, the first frame
    assert all(abs(got - want) < 8 for got, want in zip(colour, (200, 30, 60))), colour


@pytest.mark.parametrize("query, needle", [
    ({"labels": "\u00b2"}, "labels: '\u00b2' is not a class"),  # str.isdigit() holds, int() raises
    ({"labels": "1" * 5000}, "labels: '1111"),  # over int()'s 4300 digits
    ({"labels": "\u0661"}, "labels: '\u0661' is not a class"),  # int() reads Arabic-Indic 1 as 1
    ({"n": "\u0663"}, "n: expected a whole number"),
    ({"seed": "1_000"}, "seed: expected a whole number"),
    ({"n": "9" * 5000}, "n: expected a whole number"),
])
def test_malformed_query_parameters_get_a_400_naming_them(conditional, query, needle):
    status, message = error(Router(conditional, ServeLimits()).route("GET", "/", query, {}, b""))
    assert status == 400 and message.startswith(needle) and len(message) < 300, message


@pytest.mark.parametrize("body, needle", [
    (b'{"n": ' + b"9" * 5000 + b"}", "the JSON body holds a number too long"),
    (b"[" * 100_000 + b"]" * 100_000, "the JSON body nests"),
    (json.dumps({"labels": [[[1]]]}).encode(), "labels: each entry must be"),
    (json.dumps({"format": ["png"]}).encode(), "format: expected one of png, npz, got a JSON array"),
    (json.dumps({"n": 1e300}).encode(), "n: must be between 1 and 64"),
])
def test_malformed_json_bodies_get_a_400_naming_what_is_wrong(conditional, body, needle):
    router = Router(conditional, ServeLimits())
    status, message = error(router.route("POST", "/", {}, {"content-type": "application/json"}, body))
    assert status == 400 and message.startswith(needle) and len(message) < 300, message


@pytest.mark.parametrize("truncation", [10**400, "\u0663", True, [0.5]])
def test_a_truncation_that_is_not_a_decimal_number_is_named(conditional, truncation):
    # parse_generate directly: a style-based G (no tiny one is conditional and style-based here) reads the value.
    with pytest.raises(RequestError, match="^truncation: expected a number") as caught:
        parse_generate({"truncation": truncation}, conditional.meta, True, ServeLimits())
    assert caught.value.status == 400


def test_labels_longer_than_the_n_limit_are_refused_before_any_is_read(conditional):
    router = Router(conditional, ServeLimits(max_n=8))
    # Entries that are no class: refused for their count, so none of them was converted.
    body = json.dumps({"n": 1, "labels": ["x"] * 9}).encode()
    status, message = error(router.route("POST", "/", {}, {"content-type": "application/json"}, body))
    assert status == 400 and message == "labels: at most 8 classes per request (this server's limit on n), got 9"
    status, message = error(router.route("GET", "/", {"n": "1", "labels": ",".join(["x"] * 9)}, {}, b""))
    assert status == 400 and message.endswith("got 9")
    job = router.route("GET", "/", {"n": "3", "labels": ",".join(["1"] * 8)}, {}, b"")
    assert isinstance(job, GenerateRequest) and job.draw.labels.tolist() == [1, 1, 1]


def repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    """The progressive JPEG with its last scan (a refinement: few bytes, a pass over every block) repeated."""
    start, end = jpeg.rindex(b"\xff\xda"), jpeg.rindex(b"\xff\xd9")
    return jpeg[:end] + jpeg[start:end] * times + jpeg[end:]


def test_a_jpeg_of_too_many_scans_is_refused_before_decoding(upscaler):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(
        buf, format="JPEG", progressive=True)
    router = Router(upscaler, ServeLimits())
    assert isinstance(router.route("POST", "/", {}, {}, buf.getvalue()), UpscaleRequest)  # 10 scans
    assert isinstance(router.route("POST", "/", {}, {}, repeat_last_scan(buf.getvalue(), 50)), UpscaleRequest)
    bomb = repeat_last_scan(buf.getvalue(), MAX_JPEG_SCANS)
    Image.open(io.BytesIO(bomb)).load()  # a JPEG Pillow decodes: refused for its scans, not as unreadable
    status, message = error(router.route("POST", "/", {}, {}, bomb))
    assert status == 400 and f"the JPEG has {MAX_JPEG_SCANS + 10} scans" in message, message


@pytest.mark.parametrize("transparent", [0, 300])
def test_16_bit_grey_with_a_transparent_colour_keeps_its_levels(upscaler, transparent):
    ramp = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)  # 0, 257, ..., 65535
    ramp[0, 1] = 300
    plain, keyed = io.BytesIO(), io.BytesIO()
    Image.fromarray(ramp).save(plain, format="PNG")
    Image.fromarray(ramp).save(keyed, format="PNG", transparency=transparent)
    router = Router(upscaler, ServeLimits())
    without, with_trns = (router.route("POST", "/", {}, {}, b.getvalue()) for b in (plain, keyed))
    assert without.alpha is None and torch_equal(without.lr, with_trns.lr)  # not clipped at 255 (washed out)
    assert with_trns.alpha.dtype == np.uint8 and (with_trns.alpha == np.where(ramp == transparent, 0, 255)).all()


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())
