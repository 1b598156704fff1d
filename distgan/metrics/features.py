"""Feature spaces for FID, KID and precision/recall, chosen by ``eval.features``.

- ``inception``: the standard Inception-v3 pool features, from a local weights
  file (``eval.inception_weights`` or ``DISTGAN_INCEPTION_WEIGHTS``). The only
  choice whose numbers compare with published FIDs.
- ``domain``: a small network trained on the real data set (see
  ``distgan.metrics.domain``); works offline, comparable across runs on the
  same data. On labelled data its head also judges which class a sample shows.
- ``identity``: the samples themselves, for low-dimensional point data (ring8).
- ``auto``: ``domain`` for images, ``identity`` for points.

Real-data features are computed once per (feature space, data set) and cached.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from safetensors.torch import load_file, save_file

from distgan.config import ConfigError, EvalConfig
from distgan.metrics import domain
from distgan.metrics.image_quality import to_uint8
from distgan.metrics.inception import load_inception

log = logging.getLogger(__name__)

Extract = Callable[[torch.Tensor], tuple[torch.Tensor, Optional[torch.Tensor]]]


@dataclass
class FeatureNet:
    kind: str
    digest: str
    """Identifies the feature space: FIDs are comparable only between equal digests."""
    dim: int
    extract: Extract
    """Samples in the data's range -> (features [N, dim] float32, class logits [N, K] or None)."""
    classifies: bool
    """Whether the logits are the data set's classes (needed for ``class_acc``)."""
    module: Optional[torch.nn.Module] = None
    description: str = ""
    trained: Optional[domain.TrainedDomainNet] = None
    """The domain network with its provenance, which the evaluator shares across ranks."""

    def to(self, device: torch.device) -> "FeatureNet":
        if self.module is not None:
            self.module.to(device)
        return self


def cache_dir(cfg: EvalConfig) -> Path:
    """``eval.cache_dir``, else ``DISTGAN_CACHE_DIR``, else ``~/.cache/distgan``."""
    chosen = cfg.cache_dir or os.environ.get("DISTGAN_CACHE_DIR") or "~/.cache/distgan"
    return Path(chosen).expanduser()


def resolve_kind(features: str, data_kind: str) -> str:
    if features == "auto":
        return "domain" if data_kind == "image" else "identity"
    if features in ("domain", "inception") and data_kind != "image":
        raise ConfigError(f"eval.features: {features} features need image data, but the data set holds "
                          f"points; use eval.features=identity")
    return features


def _identity(shape: tuple[int, ...]) -> FeatureNet:
    dim = math.prod(shape)
    return FeatureNet("identity", "identity", dim, lambda x: (x.flatten(1).float(), None), False,
                      description="the samples themselves")


def domain_net(trained: domain.TrainedDomainNet) -> FeatureNet:
    net = trained.net

    def extract(x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        features, logits = net(x.float())
        return features, logits

    return FeatureNet("domain", trained.digest, domain.FEATURE_DIM, extract, trained.task == "classes", net,
                      f"{trained.task} network trained on the real data, held-out accuracy "
                      f"{trained.held_out_accuracy:.1%}", trained)


def _inception(cfg: EvalConfig) -> FeatureNet:
    net = load_inception(cfg.inception_weights)

    def extract(x: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        # Quantised like the image files the reference statistics come from.
        return net(to_uint8(x.float()).float()), None

    return FeatureNet("inception", domain.weights_digest(net.state_dict()), net.dim, extract, False, net,
                      "Inception-v3 pool features")


def build_feature_net(cfg: EvalConfig, x: torch.Tensor, labels: Optional[torch.Tensor], data_kind: str) -> FeatureNet:
    """The feature space for real data ``x`` (training the domain network on first use)."""
    kind = resolve_kind(cfg.features, data_kind)
    if kind == "identity":
        return _identity(tuple(x.shape[1:]))
    if kind == "inception":
        return _inception(cfg)
    return domain_net(domain.load_or_train(x, labels, cache_dir(cfg)))


@torch.no_grad()
def extract_all(net: FeatureNet, x: torch.Tensor, batch: int,
                device: torch.device) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Features (and logits) of ``x`` in batches, returned on the CPU."""
    feats, logits = [], []
    for chunk in x.split(batch):
        f, lg = net.extract(chunk.to(device))
        feats.append(f.float().cpu())
        if lg is not None:
            logits.append(lg.float().cpu())
    return torch.cat(feats), (torch.cat(logits) if logits else None)


def real_features(net: FeatureNet, cfg: EvalConfig, x: torch.Tensor, labels: Optional[torch.Tensor],
                  device: torch.device) -> torch.Tensor:
    """Features of every real sample, cached per (feature space, data set)."""
    if net.kind == "identity":
        return x.flatten(1).float()
    path = cache_dir(cfg) / f"real-{net.digest[:16]}-{domain.data_digest(x, labels)[:16]}.safetensors"
    if path.is_file():
        return load_file(str(path))["features"]
    feats, _ = extract_all(net, x, cfg.batch_size, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({"features": feats.contiguous()}, str(tmp))
    os.replace(tmp, path)
    log.info("cached the real data's %s features in %s", net.kind, path)
    return feats
