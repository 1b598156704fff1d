"""A feature network trained on the real data set itself, for FID where Inception weights cannot be had.

FID needs a feature space in which real images cluster by what they show.
Inception-v3's is the standard one, but its weights are a download; this
network is the offline alternative: a small CNN trained on the real training
images — to predict their classes when the data set has labels, otherwise to
predict which of four rotations was applied (a self-supervised task that
needs no labels). Its 128-d penultimate layer is the feature space.

FIDs are comparable only within one feature space, so the trained weights
are cached per data set, keyed by a hash of the images, the labels and the
training recipe, and every FID is reported with the hash of the weights it
used. The recipe is deterministic for a given machine; a cache shared by
the runs of a study (``eval.cache_dir``) makes their FIDs comparable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

log = logging.getLogger(__name__)

RECIPE = "domain-v2"
"""Bumped whenever the architecture or training below changes, so old caches are not reused."""
FEATURE_DIM = 128
EPOCHS, BATCH, LR, HELD_OUT = 20, 64, 1e-3, 0.15


class DomainNet(nn.Module):
    """Conv features pooled to 4x4, a 128-d embedding, and a linear head."""

    def __init__(self, channels: int, outputs: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            # Pooling to a fixed 4x4 keeps coarse layout (where strokes are) at any resolution.
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(128 * 16, FEATURE_DIM), nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(FEATURE_DIM, outputs)
        # Set after training so real features have unit mean square: KID's cubic kernel (u.v/D + 1)^3
        # assumes features of order 1, as Inception's are, and FID values stay in a familiar range.
        self.register_buffer("feature_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [-1, 1] -> (features [N, 128], logits [N, outputs])."""
        embedding = self.body(x)
        return embedding / self.feature_scale, self.head(embedding)


@dataclass
class TrainedDomainNet:
    net: DomainNet
    task: str
    """``classes`` (logits are the data set's classes) or ``rotation`` (self-supervised)."""
    held_out_accuracy: float
    """Accuracy on the 15% of the real data held out from training: how well the features separate."""
    digest: str
    """sha256 of the trained weights: FIDs are comparable only under the same digest."""


def data_digest(x: torch.Tensor, labels: Optional[torch.Tensor]) -> str:
    h = hashlib.sha256(RECIPE.encode())
    h.update(json.dumps(list(x.shape)).encode())
    h.update(x.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().long().numpy().tobytes() if labels is not None else b"rotation")
    return h.hexdigest()


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _rotated(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.randint(4, (len(x),), generator=gen)
    out = torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)])
    return out, k


def train_domain_net(x: torch.Tensor, labels: Optional[torch.Tensor], seed: int = 0) -> TrainedDomainNet:
    """Train on ``x`` [N, C, H, W] in [-1, 1]; deterministic for a given machine and seed.

    Runs under its own RNG state so that training it never shifts the caller's random streams,
    and on one CPU thread, because the thread count changes float summation order and so the weights.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(x, labels, seed)
    finally:
        torch.set_num_threads(threads)


def _train(x: torch.Tensor, labels: Optional[torch.Tensor], seed: int) -> TrainedDomainNet:
    task = "classes" if labels is not None else "rotation"
    outputs = int(labels.max()) + 1 if labels is not None else 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(x), generator=gen)
        cut = int(len(x) * (1 - HELD_OUT))
        train_idx, test_idx = order[:cut], order[cut:]
        net = DomainNet(x.shape[1], outputs)
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        for _ in range(EPOCHS):
            for batch in train_idx[torch.randperm(len(train_idx), generator=gen)].split(BATCH):
                inputs, targets = (x[batch], labels[batch]) if labels is not None else _rotated(x[batch], gen)
                loss = F.cross_entropy(net(inputs)[1], targets)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval().requires_grad_(False)
        with torch.no_grad():
            embedding = torch.cat([net.body(chunk) for chunk in x.split(512)])
            net.feature_scale.fill_(float(embedding.square().mean().sqrt()))
            inputs, targets = (x[test_idx], labels[test_idx]) if labels is not None else _rotated(x[test_idx], gen)
            accuracy = float((net(inputs)[1].argmax(1) == targets).float().mean())
    return TrainedDomainNet(net, task, accuracy, weights_digest(net.state_dict()))


def load_or_train(x: torch.Tensor, labels: Optional[torch.Tensor], cache_dir: Path) -> TrainedDomainNet:
    """The cached network for this data (trained and cached on first use)."""
    path = Path(cache_dir) / f"domain-{data_digest(x, labels)[:20]}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        with torch.random.fork_rng(devices=[]):  # the init about to be overwritten must not draw from the caller's RNG
            net = DomainNet(x.shape[1], meta["outputs"])
        state = load_file(str(path))
        if weights_digest(state) != meta["digest"]:
            raise ValueError(f"{path} does not match the digest in {meta_path}; delete both to retrain")
        net.load_state_dict(state)
        return TrainedDomainNet(net.eval().requires_grad_(False), meta["task"], meta["held_out_accuracy"],
                                meta["digest"])
    log.info("training the %s feature network on %d real samples (cached in %s)",
             "class" if labels is not None else "rotation", len(x), path)
    trained = train_domain_net(x, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Weights first, then the description that vouches for them; each replaced atomically.
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in trained.net.state_dict().items()}, str(tmp))
    os.replace(tmp, path)
    meta = {"recipe": RECIPE, "task": trained.task, "outputs": trained.net.head.out_features,
            "held_out_accuracy": trained.held_out_accuracy, "digest": trained.digest}
    meta_tmp = path.with_name(path.stem + f".json.tmp{os.getpid()}")
    meta_tmp.write_text(json.dumps(meta, indent=2))
    os.replace(meta_tmp, path.with_suffix(".json"))
    return trained
