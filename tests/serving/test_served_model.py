"""A served generator answers a batch of requests as the CLI answers each alone (in-process, no Ray): samples
equal ``distgan sample``'s for the same seed whatever else shares the batch, upscaled images equal
``distgan upscale``'s, and the health report counts the batch sizes run."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from distgan.cli import main as cli_main
from distgan.serving import Router, ServedGenerator, ServeLimits, exported_scores
from distgan.serving.requests import parse_upscale
from distgan.tasks.generation.sampling import Draw, generate_many
from distgan.tasks.super_resolution.tile_batch import upscale_many
from distgan.tasks.super_resolution.upscale import upscale_to_uint8
from tiny_generators import save_tiny


def npz(payload: bytes) -> dict:
    with np.load(io.BytesIO(payload)) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("family, conditional", [("dcgan", True), ("stylegan2", False), ("mlp", False)])
def test_a_batch_of_requests_equals_each_sampled_alone_by_the_cli(tmp_path, family, conditional):
    source = save_tiny(tmp_path / "g", family, conditional=conditional)
    model = ServedGenerator.load(source)
    router = Router(model, ServeLimits())
    truncation = {"truncation": "0.7"} if family == "stylegan2" else {}
    queries = [{"n": "3", "seed": "11", "format": "npz", **truncation}, {"n": "1", "seed": "2", "format": "npz"},
               {"n": "4", "seed": "11", "format": "npz", **({"labels": "1"} if conditional else {})}]
    jobs = [router.route("GET", "/", q, {}, b"") for q in queries]
    answers = model.generate(jobs)
    for query, answer in zip(queries, answers):
        out = tmp_path / f"cli-{query['seed']}-{query['n']}.npz"
        flags = ["--n", query["n"], "--seed", query["seed"], "--out", str(out)]
        flags += ["--labels", query["labels"]] if "labels" in query else []
        flags += ["--truncation", query["truncation"]] if "truncation" in query else []
        assert cli_main(["sample", str(source), *flags]) == 0
        alone, served = npz(out.read_bytes()), npz(answer)
        assert served.keys() == alone.keys()
        np.testing.assert_allclose(served["images"], alone["images"], atol=1e-5)
        if conditional:
            assert served["labels"].tolist() == alone["labels"].tolist()
    assert model.health()["batch_sizes"] == {"8": 1}


def test_png_answers_are_grids_and_the_health_report_describes_the_model(tmp_path):
    source = save_tiny(tmp_path / "run", "dcgan")
    (source / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (
        {"step": 2, "loss_g": 1.0}, {"step": 3, "fid": 41.5, "kid": 0.02}, {"step": 9, "fid": 1.0})) + "\n")
    model = ServedGenerator.load(source, metrics=exported_scores(source / "generator.safetensors", 3))
    router = Router(model, ServeLimits())
    (grid,) = model.generate([router.route("GET", "/", {"n": "4"}, {}, b"")])
    assert Image.open(io.BytesIO(grid)).size == (2 * 17 + 1, 2 * 17 + 1)  # 2x2 tiles of 16 px, 1 px borders
    health = json.loads(router.route("GET", "/health", {}, {}, b"").body)
    assert health["family"] == "dcgan" and health["step"] == 3 and health["task"] == "generation"
    assert health["metrics"] == {"step": 3, "fid": 41.5, "kid": 0.02}, "the scores at the exported step"
    assert health["batch_sizes"] == {"4": 1} and health["latent_dim"] == 8
    assert exported_scores(tmp_path / "elsewhere" / "generator.safetensors", 3) == {}


def test_upscaling_a_batch_of_images_equals_upscaling_each_alone(tmp_path):
    source = save_tiny(tmp_path / "sr", "srresnet")
    model = ServedGenerator.load(source, tile=6, overlap=4, max_tiles=5)
    rng = np.random.default_rng(0)
    uploads = []
    for size, mode in (((13, 9), "RGB"), ((6, 6), "RGBA"), ((13, 9), "L")):
        pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode).save(buf, format="PNG")
        uploads.append(buf.getvalue())
    jobs = [parse_upscale(body, 3, ServeLimits()) for body in uploads]
    answers = [np.asarray(Image.open(io.BytesIO(a))) for a in model.upscale(jobs)]
    for job, got in zip(jobs, answers):
        alone = upscale_to_uint8(model.module, job.lr, 2, tile=6, overlap=4)
        assert got.shape[:2] == (job.lr.shape[2] * 2, job.lr.shape[3] * 2)
        assert np.abs(got[:, :, :3].astype(int) - alone.astype(int)).max() <= 1  # float rounding across batches
    assert answers[1].shape[2] == 4 and answers[1][:, :, 3].min() > 0, "the alpha channel is kept"
    assert model.health()["batch_sizes"] == {"3": 1}


def test_tiles_of_several_images_share_forward_passes():
    calls = []

    class Doubler(torch.nn.Module):  # a x2 "generator" that records each forward's batch
        def forward(self, x):
            calls.append(x.shape[0])
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    images = [torch.rand(1, 3, 8, 8) * 2 - 1, torch.rand(1, 3, 8, 8) * 2 - 1, torch.rand(1, 3, 5, 8) * 2 - 1]
    out = upscale_many(Doubler(), images, 2, 3, tile=4, overlap=0, max_tiles=16)
    # The two 8x8 images' 4x4 tiles (4 each) and the 5-row image's 2 of that shape share one pass; its two
    # 1x4 tiles (the last row) make the second.
    assert sorted(calls) == [2, 10]
    assert [o.shape for o in out] == [(16, 16, 3), (16, 16, 3), (10, 16, 3)]
    want = torch.nn.functional.interpolate(images[2], scale_factor=2)
    assert np.array_equal(out[2], ((want.double().clamp(-1, 1) + 1) * 127.5).round().byte()[0].permute(1, 2, 0).numpy())


def test_generate_many_refuses_mixed_conditioning():
    g = torch.nn.Linear(2, 2)
    g.latent_dim = 2
    with pytest.raises(ValueError, match="either every draw has labels"):
        generate_many(g, [Draw(1, 0, torch.tensor([0])), Draw(1, 0)])


@pytest.mark.parametrize("family, conditional", [("dcgan", False), ("stylegan2", True)])
def test_a_batch_is_computed_on_the_models_device(tmp_path, family, conditional):
    """A GPU replica holds G on its device; the latents drawn on the CPU from each seed go there too. The meta
    device stands in for a GPU (none here): a tensor left on the CPU fails the forward pass on it."""
    from distgan.persist.export import load_generator

    g, meta = load_generator(save_tiny(tmp_path / "g", family, conditional))
    g = g.to("meta")
    labels = torch.tensor([0, 2], device="meta") if conditional else None
    out = generate_many(g, [Draw(2, 0, labels, 0.7 if family == "stylegan2" else None), Draw(1, 5, labels[:1]
                                                                                              if conditional else None)])
    assert [o.device.type for o in out] == ["meta", "meta"]
    assert [tuple(o.shape) for o in out] == [(2, *meta["data_shape"]), (1, *meta["data_shape"])]
