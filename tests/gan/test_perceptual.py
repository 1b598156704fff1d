"""The VGG19 perceptual loss, on a random-weights file laid out like torchvision's ``vgg19-dcbb9e9d.pth``.

The real weights cannot be downloaded here. A file with torchvision's key layout
and random (He-initialised) weights checks what the loss owns: the layout and
layer indices, pre-ReLU features, the weighting, the float32 computation, the
gradient path and the refusal of bad files.
"""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from distgan.config import Config, ConfigError, PerceptualLossConfig
from distgan.gan import perceptual
from distgan.gan.perceptual import LAYERS, PerceptualLoss, VGG19Features, check_config, load_vgg19

# torchvision's vgg19().features: conv indices and channels, written out independently of the module.
TORCHVISION_CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
                     14: (256, 256), 16: (256, 256), 19: (256, 512), 21: (512, 512), 23: (512, 512),
                     25: (512, 512), 28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512)}

# The random file is not torchvision's, so every load warns; that warning has a test of its own.
pytestmark = pytest.mark.filterwarnings("ignore:.*is not torchvision's vgg19:RuntimeWarning")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """torchvision's key layout with He-initialised random convs and small random biases.

    He init keeps features O(1) down to conv5_4, so distances are input-dependent. A
    classifier key rides along, as in the real file; the loader must ignore it.
    """
    gen = torch.Generator().manual_seed(0)
    state = {}
    for index, (cin, cout) in TORCHVISION_CONVS.items():
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
        state[f"features.{index}.bias"] = torch.randn(cout, generator=gen) * 0.1
    state["classifier.6.bias"] = torch.zeros(1000)  # the real head is 4096x25088; one key is enough
    path = tmp_path_factory.mktemp("vgg") / "random-vgg19.pth"
    torch.save(state, path)
    return path


def _loss(weights_file, **kwargs) -> PerceptualLoss:
    return PerceptualLoss(PerceptualLossConfig(weight=1.0, **kwargs), weights=weights_file)


@pytest.fixture(scope="module")
def loss(weights_file):
    return _loss(weights_file, layers={"conv2_2": 1.0, "conv5_4": 1.0})


def _images(n: int = 2, side: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_layer_names_follow_torchvision_indices():
    assert {LAYERS[f"conv{b}_{i}"] for b, i in [(1, 1), (1, 2), (2, 1), (2, 2)]} == {0, 2, 5, 7}
    assert sorted(LAYERS.values()) == sorted(TORCHVISION_CONVS) and LAYERS["conv5_4"] == 34
    shapes = {k: tuple(v.shape) for k, v in VGG19Features().state_dict().items()}
    want = {f"features.{i}.weight": (cout, cin, 3, 3) for i, (cin, cout) in TORCHVISION_CONVS.items()}
    want.update({f"features.{i}.bias": (cout,) for i, (cin, cout) in TORCHVISION_CONVS.items()})
    assert shapes == want


def test_zero_for_identical_images_positive_otherwise(loss):
    x = _images()
    assert loss(x, x.clone()).item() == 0.0
    assert loss(x, _images(seed=2)).item() > 0.0
    assert loss(x, (x + 0.05).clamp(-1, 1)).item() > 0.0


def test_gradient_reaches_the_output_only(loss):
    output = _images().requires_grad_(True)
    target = _images(seed=2).requires_grad_(True)
    loss(output, target).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert target.grad is None
    assert not any(p.requires_grad or p.grad is not None for p in loss.vgg.parameters())


def test_layer_weights_and_criteria(weights_file):
    x, y = _images(), _images(seed=2)
    feats_x = load_vgg19(weights_file)(x, ["conv1_2", "conv3_1"])
    feats_y = load_vgg19(weights_file)(y, ["conv1_2", "conv3_1"])
    l1 = {k: F.l1_loss(feats_x[k], feats_y[k]).item() for k in feats_x}
    l2 = {k: F.mse_loss(feats_x[k], feats_y[k]).item() for k in feats_x}
    combined = _loss(weights_file, layers={"conv1_2": 0.5, "conv3_1": 2.0, "conv5_4": 0.0})
    assert combined(x, y).item() == pytest.approx(0.5 * l1["conv1_2"] + 2.0 * l1["conv3_1"], rel=1e-5)
    squared = _loss(weights_file, layers={"conv3_1": 1.0}, criterion="l2")
    assert squared(x, y).item() == pytest.approx(l2["conv3_1"], rel=1e-5)
    assert l1["conv3_1"] != pytest.approx(l2["conv3_1"], rel=1e-2)  # the two criteria really differ here
    # A zero weight removes the layer; the network is cut after the deepest weighted one.
    assert set(combined.layers) == {"conv1_2", "conv3_1"} and len(combined.vgg.features) == LAYERS["conv3_1"] + 1


def test_features_are_taken_before_the_relu(weights_file):
    vgg = load_vgg19(weights_file)
    x = _images()
    feats = vgg(x, ["conv1_1", "conv4_4"])
    assert feats["conv1_1"].min() < 0 and feats["conv4_4"].min() < 0  # a ReLU output never is
    # conv1_1 by hand: [-1, 1] -> [0, 1] -> ImageNet normalisation -> the first conv, nothing after it.
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    normalized = ((x + 1) / 2 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    state = torch.load(weights_file, weights_only=True)
    by_hand = F.conv2d(normalized, state["features.0.weight"], state["features.0.bias"], padding=1)
    assert torch.allclose(feats["conv1_1"], by_hand, atol=1e-5)


def test_only_layers_up_to_the_deepest_requested_run(weights_file):
    vgg = load_vgg19(weights_file)
    ran = []
    for index, module in enumerate(vgg.features):
        module.register_forward_pre_hook(lambda m, a, i=index: ran.append(i))
    vgg(_images(), ["conv2_1"])
    assert ran == list(range(LAYERS["conv2_1"] + 1))


def test_grey_and_bf16_inputs(loss):
    x, y = _images(), _images(seed=2)
    grey = loss(x[:, :1], y[:, :1])  # grey is seen as R = G = B
    assert grey.item() == pytest.approx(loss(x[:, :1].expand(-1, 3, -1, -1), y[:, :1].expand(-1, 3, -1, -1)).item())
    xb, yb = x.bfloat16().requires_grad_(True), y.bfloat16()
    value = loss(xb, yb)
    assert value.dtype == torch.float32
    # The same bf16 values, computed in float32 throughout: equal up to float32 summation order.
    assert value.item() == pytest.approx(loss(xb.detach().float(), yb.float()).item(), rel=1e-5)
    value.backward()
    assert xb.grad is not None and xb.grad.dtype == torch.bfloat16


def test_the_network_stays_frozen(loss):
    loss.train()
    assert loss.training and not loss.vgg.training
    assert not any(p.requires_grad for p in loss.parameters())


def test_classifier_keys_are_ignored_and_hash_warned(weights_file):
    with pytest.warns(RuntimeWarning, match="not torchvision's vgg19-dcbb9e9d.pth"):
        load_vgg19(weights_file)


def test_missing_file_says_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv(perceptual.WEIGHTS_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError) as error:
        load_vgg19()
    for needle in ("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/", "every node",
                   "loss.perceptual.vgg_weights", "DISTGAN_VGG19_WEIGHTS"):
        assert needle in str(error.value)
    monkeypatch.setenv(perceptual.WEIGHTS_ENV_VAR, str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_vgg19()


def test_wrong_shape_and_missing_keys_name_file_and_key(tmp_path, weights_file):
    state = torch.load(weights_file, weights_only=True)
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    wrong = tmp_path / "grey-vgg.pth"
    torch.save(state, wrong)
    with pytest.raises(ValueError, match=r"grey-vgg.pth: not torchvision VGG19 weights: wrong shape "
                                         r"features.0.weight \(64, 1, 3, 3\) \(want \(64, 3, 3, 3\)\)"):
        load_vgg19(wrong)
    state = torch.load(weights_file, weights_only=True)
    del state["features.34.bias"]
    truncated = tmp_path / "vgg16ish.pth"
    torch.save(state, truncated)
    with pytest.raises(ValueError, match=r"vgg16ish.pth: not torchvision VGG19 weights: missing features.34.bias"):
        load_vgg19(truncated)


class _Payload:
    """Unpickling this creates a file: stands in for a weights file that carries code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickled_code_is_never_run(tmp_path, weights_file):
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(_Payload(live))).close()
    assert live.exists()  # the payload works when unpickled the unsafe way
    marker = tmp_path / "marker"
    state = torch.load(weights_file, weights_only=True)
    state["features.0.weight"] = _Payload(marker)
    path = tmp_path / "payload.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="payload.pth: not a plain state dict"):
        load_vgg19(path)
    assert not marker.exists()


def _config(**perceptual_fields) -> Config:
    cfg = Config()
    for key, value in perceptual_fields.items():
        setattr(cfg.loss.perceptual, key, value)
    return cfg


def test_check_config(monkeypatch, weights_file, tmp_path):
    monkeypatch.delenv(perceptual.WEIGHTS_ENV_VAR, raising=False)
    check_config(_config())  # weight 0: no file needed
    with pytest.raises(ConfigError, match=r"unknown VGG19 layer 'conv5_5' \(did you mean 'conv5_4'\?\)"):
        check_config(_config(layers={"conv5_5": 1.0}))
    with pytest.raises(ConfigError, match=r"'relu5_4' \(did you mean 'conv5_4'\? .*before the ReLU"):
        check_config(_config(layers={"relu5_4": 1.0}))
    with pytest.raises(ConfigError, match=r"loss.perceptual.layers.conv1_1: must be >= 0"):
        check_config(_config(layers={"conv1_1": -1.0}))
    with pytest.raises(ConfigError, match=r"loss.perceptual.weight: must be >= 0"):
        check_config(_config(weight=-0.1))
    with pytest.raises(ConfigError, match="no layer has a weight > 0"):
        check_config(_config(weight=1.0, layers={"conv5_4": 0.0}, vgg_weights=str(weights_file)))
    with pytest.raises(ConfigError) as error:
        check_config(_config(weight=1.0, vgg_weights=str(tmp_path / "absent.pth")))
    message = str(error.value)
    assert message.startswith("loss.perceptual.vgg_weights: VGG19 weights not found at")
    for needle in ("absent.pth", "vgg19-dcbb9e9d.pth", "download.pytorch.org/models", "every node",
                   "DISTGAN_VGG19_WEIGHTS"):
        assert needle in message
    check_config(_config(weight=1.0, vgg_weights=str(weights_file)))
    monkeypatch.setenv(perceptual.WEIGHTS_ENV_VAR, str(weights_file))
    check_config(_config(weight=1.0))
