"""The perceptual loss of SRGAN/ESRGAN: distances between VGG19 features of G's output and of the target.

A pixel loss alone pulls G towards the blurry mean of all plausible high-
resolution images; comparing ImageNet VGG19 features instead rewards texture
and edges that look right (Johnson et al. 2016; Ledig et al. 2017). The VGG19
is plain torch laid out exactly like torchvision's ``vgg19().features`` (a
Sequential whose indices give the state-dict keys ``features.0.weight`` ..
``features.34.bias``), so torchvision's published ImageNet file
``vgg19-dcbb9e9d.pth`` loads as is, without torchvision.

Those weights are never downloaded: ``loss.perceptual.vgg_weights`` or
``DISTGAN_VGG19_WEIGHTS`` names a local copy, read with ``weights_only=True``
and checked key by key (``distgan.core.pretrained``, shared with FID's Inception).
The network is frozen and knows nothing of DeepSpeed: it lives beside G's
engine on each worker, and only gradients with respect to G's output pass
through it.
"""

from __future__ import annotations

import difflib
import os
import warnings
from typing import Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from distgan.config import Config, ConfigError, PerceptualLossConfig, positive
from distgan.core.pretrained import check_state_dict, read_state_dict, resolve_weights, sha256

WEIGHTS_ENV_VAR = "DISTGAN_VGG19_WEIGHTS"
WEIGHTS_FILE_NAME = "vgg19-dcbb9e9d.pth"
WEIGHTS_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# torch.hub names files by the leading digits of their sha256.
WEIGHTS_SHA256_PREFIX = "dcbb9e9d"

# torchvision's configuration "E": output channels of each 3x3 conv, "M" a 2x2 max pool.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_indices() -> dict[str, int]:
    """``conv{block}_{i}`` -> index of that conv in ``features`` (conv1_1 -> 0 ... conv5_4 -> 34)."""
    names, index, block, conv = {}, 0, 1, 1
    for item in _VGG19:
        if item == "M":
            index, block, conv = index + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            index, conv = index + 2, conv + 1  # the conv and its ReLU
    return names


LAYERS: dict[str, int] = _layer_indices()


class VGG19Features(nn.Module):
    """Images ``[N, C, H, W]`` in [-1, 1] (C = 1 or 3) -> ``{layer: features before its ReLU}``.

    ``depth`` keeps ``features`` only up to that layer's conv: what comes after
    it would never run, so its weights need not sit in memory either.
    """

    def __init__(self, depth: str = "conv5_4"):
        super().__init__()
        modules: list[nn.Module] = []
        cin = 3
        for item in _VGG19:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                # Not in place (torchvision's is): the conv's output is the feature we keep, and an in-place
                # ReLU would overwrite it, and the tensor autograd saved for it, with its positive part.
                modules += [nn.Conv2d(cin, item, kernel_size=3, padding=1), nn.ReLU()]
                cin = item
        self.features = nn.Sequential(*modules[:LAYERS[depth] + 1])
        # Not persistent: the state dict stays exactly torchvision's layout.
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images [N, C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
        wanted = {LAYERS[name]: name for name in layers}
        if not wanted:
            return {}
        # The network was trained on RGB in [0, 1] normalized by ImageNet's statistics; grey counts as R=G=B.
        x = ((x + 1) / 2).expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
                if len(out) == len(wanted):  # nothing deeper is asked for: stop here
                    break
        return out


def weights_path(path: Union[str, os.PathLike, None] = None) -> str:
    """The weights file to use: ``path``, else ``DISTGAN_VGG19_WEIGHTS``; FileNotFoundError says where to
    get it when neither names an existing file."""
    return resolve_weights(path, WEIGHTS_ENV_VAR, _missing_weights_message)


def _missing_weights_message(path: Optional[str]) -> str:
    where = f"VGG19 weights not found at {path!r}" if path else "no VGG19 weights given"
    return (f"{where}. The perceptual loss needs torchvision's ImageNet VGG19 weights, {WEIGHTS_FILE_NAME} "
            f"({WEIGHTS_URL}). This machine cannot download it: fetch it elsewhere, put it on every node, and "
            f"set the config key loss.perceptual.vgg_weights or the environment variable {WEIGHTS_ENV_VAR} to "
            f"its path (or set loss.perceptual.weight=0 to train without the perceptual loss).")


def load_vgg19(path: Union[str, os.PathLike, None] = None, depth: str = "conv5_4") -> VGG19Features:
    """Frozen VGG19 features (eval mode, no gradients) with weights from ``path`` or ``$DISTGAN_VGG19_WEIGHTS``.

    The whole ``features`` part of the file is checked (every conv, so a truncated
    or foreign file fails here, naming the file and the key); other keys (the
    classifier) are ignored. Layers deeper than ``depth`` are then dropped.
    """
    path = weights_path(path)
    state = {k: v for k, v in read_state_dict(path).items() if k.startswith("features.")}
    model = VGG19Features()
    model.load_state_dict(check_state_dict(state, model.state_dict(), path, "torchvision VGG19 weights"))
    sha = sha256(path)
    if not sha.startswith(WEIGHTS_SHA256_PREFIX):
        warnings.warn(f"{path} (sha256 {sha[:8]}...) is not torchvision's {WEIGHTS_FILE_NAME}; the perceptual "
                      f"loss uses its weights as they are", RuntimeWarning, stacklevel=2)
    model.features = model.features[:LAYERS[depth] + 1]  # slicing keeps the indices, so keys stay torchvision's
    return model.eval().requires_grad_(False)


class PerceptualLoss(nn.Module):
    """``sum_l weight_l * criterion(phi_l(output), phi_l(target))`` over ``loss.perceptual.layers``.

    ``phi_l`` is VGG19's layer ``l`` *before* its ReLU. ESRGAN (Wang et al. 2018,
    section 3.3) moved the loss there from SRGAN's post-activation features: deep
    activations are very sparse (most channels zero on a given image), so the loss
    after the ReLU supervises little and lets G's output drift in brightness; the
    values before it keep that information. Inputs are G's output and the target in
    [-1, 1]; the result is a float32 scalar whatever their dtype (bf16 features would
    cost the loss its precision). ``loss.perceptual.weight`` is not applied here: it
    is the caller's weight for this term in G's loss.
    """

    def __init__(self, cfg: PerceptualLossConfig, weights: Union[str, os.PathLike, None] = None):
        super().__init__()
        _check_layers(cfg.layers)
        self.layers = {name: float(w) for name, w in cfg.layers.items() if w > 0}
        if not self.layers:
            raise ConfigError("loss.perceptual.layers: no layer has a weight > 0")
        self.criterion = F.l1_loss if cfg.criterion == "l1" else F.mse_loss
        deepest = max(self.layers, key=LAYERS.__getitem__)
        self.vgg = load_vgg19(weights if weights is not None else cfg.vgg_weights, depth=deepest)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.vgg.eval()  # frozen: a parent's .train() must not change it
        return self

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.shape != target.shape:
            raise ValueError(f"output and target shapes differ: {tuple(output.shape)} vs {tuple(target.shape)}")
        # Under an autocast region the convs would run in bf16/fp16 again; this term stays float32.
        with torch.autocast(device_type=output.device.type, enabled=False):
            fake = self.vgg(output.float(), self.layers)
            # The target is a constant: no graph for it (cheaper than computing one and detaching).
            with torch.no_grad():
                real = self.vgg(target.float(), self.layers)
            total = torch.zeros((), dtype=torch.float32, device=output.device)
            for name, weight in self.layers.items():
                total = total + weight * self.criterion(fake[name], real[name])
        return total


def _check_layers(layers: dict[str, float]) -> None:
    for name, weight in layers.items():
        if name not in LAYERS:
            if name.startswith("relu") and "conv" + name[4:] in LAYERS:
                hint = f" (did you mean 'conv{name[4:]}'? the loss takes the features before the ReLU)"
            else:
                close = difflib.get_close_matches(name, LAYERS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"loss.perceptual.layers: unknown VGG19 layer {name!r}{hint}; "
                              f"the layers are {', '.join(LAYERS)}")
        positive(f"loss.perceptual.layers.{name}", weight, allow_zero=True)


def check_config(cfg: Config) -> None:
    """Raise ConfigError, naming the key, for unknown layers, negative weights, or a perceptual loss in use
    (weight > 0) without a VGG19 weights file. Only the file's existence is checked here (reading 550 MB to
    validate a config would be slow); its contents are checked when the loss is built."""
    p = cfg.loss.perceptual
    positive("loss.perceptual.weight", p.weight, allow_zero=True)
    _check_layers(p.layers)
    if p.weight == 0:
        return
    if not any(w > 0 for w in p.layers.values()):
        raise ConfigError(f"loss.perceptual.layers: loss.perceptual.weight is {p.weight} but no layer has a "
                          f"weight > 0; give one, e.g. loss.perceptual.layers={{conv5_4: 1.0}}")
    try:
        weights_path(p.vgg_weights)
    except FileNotFoundError as exc:
        raise ConfigError(f"loss.perceptual.vgg_weights: {exc}") from None
