"""A generator imported from published ESRGAN/Real-ESRGAN weights (``distgan import-weights``) is served as a
trained one is: the upscaling a client gets equals the published network's forward on its upload."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from distgan.persist.import_weights import import_weights
from distgan.serving import Router, ServedGenerator, ServeLimits
from published_weights import basicsr_rrdbnet, reference_forward


def test_an_imported_published_generator_upscales_as_the_published_network(tmp_path):
    state = basicsr_rrdbnet(seed=4)
    torch.save({"params_ema": state}, tmp_path / "RealESRGAN_x4plus_tiny.pth")
    import_weights(tmp_path / "RealESRGAN_x4plus_tiny.pth", "rrdb", tmp_path / "g")
    model = ServedGenerator.load(tmp_path / "g", tile=64, overlap=8, max_tiles=16)
    assert not model.generates and model.health()["family"] == "rrdb"

    pixels = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
    upload = io.BytesIO()
    Image.fromarray(pixels).save(upload, format="PNG")
    router = Router(model, ServeLimits())
    job = router.route("POST", "/", {}, {"content-type": "image/png"}, upload.getvalue())
    (answer,) = model.upscale([job])
    got = np.asarray(Image.open(io.BytesIO(answer)))

    with torch.no_grad():
        x01 = torch.from_numpy(pixels).permute(2, 0, 1)[None].double().div(255).float()
        want = reference_forward(state, x01).clamp(0, 1)[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    assert got.shape == (40, 56, 3)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # float rounding of the range fold
