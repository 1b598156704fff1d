"""The FID Inception network against torch-fidelity's reference, on a random-weights file.

The real weights cannot be downloaded here, so both networks load one file of
random weights written by the test. That checks what matters for FID
comparability: the architecture, the state-dict layout, the resize and the
input scaling; with the real file the two then compute the same function.
"""

from __future__ import annotations

import hashlib
import json
import importlib
import importlib.util
import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import safetensors.torch
import scipy.linalg
import threadpoolctl
import torch
import torch.nn.functional as F

from distgan.metrics import inception
from distgan.metrics.distances import fid
from distgan.metrics.inception import InceptionFeatures, load_inception, resize_bilinear_tf1

SET_SIZE = 24


@pytest.fixture(scope="module")
def reference():
    """torch-fidelity's Inception and TF resize modules, imported without the package ``__init__``.

    ``import torch_fidelity`` runs its ``__init__``, which pulls in torchvision (for datasets and other
    extractors); the Makefile installs torch-fidelity without it, because a torchvision build does not
    load against the CPU torch. The two modules we compare against need neither, so a bare package
    object with the right ``__path__`` stands in for the package.
    """
    added = "torch_fidelity" not in sys.modules
    if added:
        package = types.ModuleType("torch_fidelity")
        package.__path__ = list(importlib.util.find_spec("torch_fidelity").submodule_search_locations)
        sys.modules["torch_fidelity"] = package
    extractor = importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    resize = importlib.import_module("torch_fidelity.interpolate_compat_tensorflow")
    yield types.SimpleNamespace(extractor=extractor, resize=resize)
    if added:  # leave no half-initialised package behind for other test modules
        for name in [n for n in sys.modules if n == "torch_fidelity" or n.startswith("torch_fidelity.")]:
            del sys.modules[name]


def _colour_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """RGB 32x32: a random colour per image plus pixel noise, so images differ as wholes, as real ones do."""
    colour = torch.randint(32, 224, (n, 3, 1, 1), generator=generator)
    return (colour + torch.randint(-32, 33, (n, 3, 32, 32), generator=generator)).to(torch.uint8)


def _grey_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """Grey 16x16 ``[N, 1, H, W]``: a random level per image, a vertical ramp and weaker noise."""
    level = torch.randint(48, 176, (n, 1, 1, 1), generator=generator)
    ramp = torch.linspace(0, 48, 16).round().long().view(1, 1, 16, 1)
    return (level + ramp + torch.randint(-16, 17, (n, 1, 16, 16), generator=generator)).to(torch.uint8)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A state dict of random weights with random BatchNorm statistics.

    PyTorch's default initialisation shrinks activations several-fold per
    layer; 90-odd layers later the features would be ~1e-8 and, after BN's
    mean shift, the same for every input, which would make the comparisons
    vacuous. He-initialised convolutions and BN scales of about one keep the
    features O(1) and input-dependent, and random running means and variances
    make every BN do real work.
    """
    torch.manual_seed(0)
    model = InceptionFeatures()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def networks(weights_file, reference):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the non-standard-hash warning, tested on its own
        ours = load_inception(weights_file)
    theirs = reference.extractor.FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_file))
    return ours, theirs


@pytest.fixture(scope="module")
def features(networks):
    """Features of two sets from both networks: the grey images go in as C=1 to ours, as RGB to the reference."""
    ours, theirs = networks
    generator = torch.Generator().manual_seed(1)
    rgb, grey = _colour_images(SET_SIZE, generator), _grey_images(SET_SIZE, generator)
    with torch.no_grad():
        return types.SimpleNamespace(
            ours_a=ours(rgb.float()), ours_b=ours(grey.float()),
            ref_a=theirs(rgb)[0], ref_b=theirs(grey.repeat(1, 3, 1, 1))[0])


def test_features_match_the_reference(features):
    for ours, ref in ((features.ours_a, features.ref_a), (features.ours_b, features.ref_b)):
        assert ours.dtype == torch.float32 and ours.shape == (SET_SIZE, InceptionFeatures.dim)
        scale = ref.abs().max()
        assert scale > 1e-2 and ref.std(dim=0).mean() > 1e-3 * scale  # features are O(1) and vary with the input
        # 1e-4 of the feature scale: float32 summation-order noise through ~90 layers, far below any real bug.
        assert (ours - ref).abs().max() <= 1e-4 * scale


def _scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula of pytorch-fid: sqrtm of the covariance product."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(scipy.linalg.sqrtm(s_a @ s_b).real))


def test_fid_matches_the_reference(features):
    # All 2048 dimensions from 24 samples: the covariances have rank 23, where sqrtm(S_a S_b) is ill-posed
    # (a 2048x2048 matrix with ~2000 zero eigenvalues) and slow, so scipy would judge itself rather than us.
    # There the check is the network's part alone: our FID on our features vs on the reference features.
    # One BLAS thread: with OpenBLAS's two threads contending for 2 busy cores this took ~45 s instead of ~4 s.
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        ours = fid(features.ours_a, features.ours_b)
        ref = fid(features.ref_a, features.ref_b)
    assert ours > 1.0  # two different input distributions give a clearly non-zero distance
    assert abs(ours - ref) <= 1e-3  # in FID units; published FIDs carry two decimals
    # The formula end to end (our network + our fid vs reference network + scipy) where sqrtm is well
    # posed: 8 dimensions, so 24 samples give full-rank covariances; the most varying ones, because
    # ReLU leaves some features at zero for every image, which would make the covariances singular again.
    dims = torch.cat([features.ref_a, features.ref_b]).std(dim=0).topk(8).indices
    ours_low = fid(features.ours_a[:, dims], features.ours_b[:, dims])
    scipy_low = _scipy_fid(features.ref_a[:, dims].numpy(), features.ref_b[:, dims].numpy())
    assert scipy_low > 1e-2 and abs(ours_low - scipy_low) <= 1e-4 * scipy_low


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 40, 30)])
def test_resize_matches_tensorflow_1x(reference, shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    ours = resize_bilinear_tf1(x, (299, 299))
    ref = reference.resize.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert ours.shape == ref.shape == (2, 3, 299, 299)
    assert (ours - ref).abs().max() <= 1e-5
    # PyTorch's own resize samples other points; the check above can tell the two apart.
    assert (F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - ref).abs().max() > 1e-2


def test_the_module_is_frozen_and_checks_channels(networks):
    ours, _ = networks
    assert not ours.training and not any(p.requires_grad for p in ours.parameters())
    with pytest.raises(ValueError, match="C = 1 or 3"):
        ours(torch.zeros(1, 2, 8, 8))


def test_missing_weights_say_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as error:
        load_inception()
    message = str(error.value)
    for needle in ("DISTGAN_INCEPTION_WEIGHTS", "eval.inception_weights", "pt_inception-2015-12-05-6726825d.pth",
                   "weights-inception-2015-12-05-6726825d.pth", "cannot download"):
        assert needle in message
    monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_inception()


def test_wrong_keys_and_shapes_are_rejected(tmp_path, weights_file):
    wrong_keys = tmp_path / "not-inception.pth"
    torch.save({"layer.weight": torch.zeros(3)}, wrong_keys)
    with pytest.raises(ValueError, match="not-inception.pth: not an Inception-v3 FID weights file"):
        load_inception(wrong_keys)
    state = torch.load(weights_file, weights_only=True)
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's ImageNet head, not the TF graph's 1008
    wrong_shape = tmp_path / "imagenet-head.pth"
    torch.save(state, wrong_shape)
    with pytest.raises(ValueError, match=r"imagenet-head.pth.*wrong shape fc.weight \(1000, 2048\)"):
        load_inception(wrong_shape)


class _Payload:
    """Unpickling this creates a file: stands in for a weights file that carries code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_code_is_never_run(tmp_path):
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(_Payload(live))).close()
    assert live.exists()  # the payload works when unpickled the unsafe way
    marker = tmp_path / "marker"
    path = tmp_path / "payload.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": _Payload(marker)}, path)
    with pytest.raises(ValueError, match="payload.pth: not a plain state dict"):
        load_inception(path)
    assert not marker.exists()


def test_environment_variable_and_hash_warning(monkeypatch, weights_file):
    monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(weights_file))
    with pytest.warns(RuntimeWarning, match="not the standard FID Inception weights"):
        load_inception()
    # A file with the standard hash loads silently (we cannot forge one, so the expected prefix moves).
    sha = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    monkeypatch.setattr(inception, "WEIGHTS_SHA256_PREFIX", sha[:8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_inception()


def test_safetensors_weights_load(tmp_path, weights_file):
    state = torch.load(weights_file, weights_only=True)
    path = tmp_path / "random-inception.safetensors"
    safetensors.torch.save_file(state, str(path))
    with pytest.warns(RuntimeWarning):
        model = load_inception(path)
    loaded = model.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_distgan_evaluate_with_inception_features(weights_file, tmp_path, capsys):
    """The whole path on a small RGB folder: real features cached, generated ones quantised like files."""
    from PIL import Image

    from distgan import models
    from distgan.cli import main as cli_main
    from distgan import load_config
    from distgan.persist.export import save_generator

    folder = tmp_path / "photos"
    folder.mkdir()
    images = _colour_images(16, torch.Generator().manual_seed(5))[:, :, :16, :16]
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:02d}.png")
    cfg = load_config(None, (f"data.path={folder}", "data.channels=3", "model.g_width=16", "model.latent_dim=16"))
    torch.manual_seed(0)
    g = models.build_generator(cfg.model, (3, 16, 16), 0)
    save_generator(tmp_path / "gen", g.eval(), {"model": cfg.to_dict()["model"], "data_config": cfg.to_dict()["data"],
                                                 "data_shape": [3, 16, 16], "num_classes": 0, "class_names": []})
    args = ["evaluate", str(tmp_path / "gen"), "eval.cache_dir=" + str(tmp_path / "cache"), "--features", "inception",
            "--inception-weights", str(weights_file), "--metrics", "fid,kid", "--n", "12", "--json"]
    assert cli_main(args) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["features"] == "inception" and record["fid"] > 0 and np.isfinite(record["kid"])
    assert "not the standard" in err and "use at least 2048 samples" in err
    assert len(list((tmp_path / "cache").glob("real-*.safetensors"))) == 1
    assert cli_main(args) == 0  # the second time from the cache, with the same value
    assert json.loads(capsys.readouterr().out)["fid"] == pytest.approx(record["fid"], rel=1e-9)
