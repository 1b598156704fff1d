"""Evaluation of a generator: FID, KID, precision/recall and class accuracy, across the workers.

Every rank generates its contiguous share of ``eval.n`` samples from latents
drawn with ``eval.seed`` (sample i gets the same latent whatever the worker
count), extracts their features, and rank 0 gathers them, compares them with
the cached real-data features and broadcasts the scores, so every rank
returns (and reports) the same dict. A style-based G's per-pixel noise is drawn
per batch from ``eval.seed`` and the batch's first sample, so the same seed and
worker count give the same scores (its draws depend on how the batches fall).
The evaluator never touches the training RNG streams: a resumed run draws the
same batches whether or not it evaluated.

Knows nothing of Ray; the collectives are torch.distributed's, and with one
process (``distgan evaluate``) there are none.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from typing import Iterator, Optional

import torch
import torch.distributed as dist
from threadpoolctl import threadpool_limits
from torch import nn

from distgan.config import Config, ConfigError, EvalConfig, positive
from distgan.metrics import distances
from distgan.metrics.features import (FeatureNet, build_feature_net, domain_net, extract_all, real_features,
                                      resolve_kind)
from distgan.metrics.inception import weights_path
from distgan.metrics.registry import METRICS, Metric, parse

log = logging.getLogger(__name__)

Scores = dict[str, float]
TASK = "generation"

DEFAULT_METRICS = "fid,kid,pr"
"""What ``eval.metrics: auto`` means for generation."""


def parse_metrics(spec: str) -> list[str]:
    return parse(spec, TASK, DEFAULT_METRICS)


class Evaluation:
    """What one evaluation measured, handed to each metric (rank 0 only)."""

    def __init__(self, cfg: EvalConfig, real: torch.Tensor, real_stats: distances.GaussianStats,
                 fake: torch.Tensor, predicted: Optional[torch.Tensor], requested: Optional[torch.Tensor],
                 class_names: tuple[str, ...]):
        self.cfg, self.real, self.real_stats, self.fake = cfg, real, real_stats, fake
        self.predicted, self.requested, self.class_names = predicted, requested, class_names


def _fid(ev: Evaluation) -> Scores:
    return {"fid": distances.frechet_distance(distances.GaussianStats.of(ev.fake, "generated"), ev.real_stats)}


def _kid(ev: Evaluation) -> Scores:
    with warnings.catch_warnings():  # a capped subset size is a property of eval.n, said once at start
        warnings.simplefilter("ignore", RuntimeWarning)
        result = distances.kid(ev.fake, ev.real, ev.cfg.kid_subsets, ev.cfg.kid_subset_size, ev.cfg.seed)
    return {"kid": result.mean, "kid_std": result.std}


def _precision_recall(ev: Evaluation) -> Scores:
    # Equal-sized sets: the k-NN radii shrink as a set grows, so unequal sizes bias the two numbers.
    real = ev.real
    if len(real) > len(ev.fake):
        real = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(ev.cfg.seed))[:len(ev.fake)]]
    result = distances.precision_recall(real, ev.fake, ev.cfg.pr_k)
    return {"precision": result.precision, "recall": result.recall}


def _class_accuracy(ev: Evaluation) -> Scores:
    hits = (ev.predicted == ev.requested).double()
    scores = {"class_acc": float(hits.mean())}
    for k, name in enumerate(ev.class_names):
        scores[f"class_acc/{name}"] = float(hits[ev.requested == k].mean())
    return scores


METRICS.register("fid")(Metric(TASK, _fid, {"fid": "min"}))
METRICS.register("kid")(Metric(TASK, _kid, {"kid": "min"}))
METRICS.register("pr")(Metric(TASK, _precision_recall, {"precision": "max", "recall": "max"}))
METRICS.register("class_acc")(Metric(TASK, _class_accuracy, {"class_acc": "max"},
                                     needs="a conditional model and eval.features=domain"))


def check_config(cfg: Config, data_shape: tuple[int, ...]) -> None:
    """The ``eval`` section against the data (of ``data_shape``) and the model."""
    e = cfg.eval
    for name in ("batch_size", "kid_subsets", "pr_k"):
        positive(f"eval.{name}", getattr(e, name))
    positive("eval.seed", e.seed, allow_zero=True)
    if e.n < 2:
        raise ConfigError(f"eval.n: FID and KID need at least 2 samples, got {e.n}")
    if e.kid_subset_size < 2:
        raise ConfigError(f"eval.kid_subset_size: must be >= 2, got {e.kid_subset_size}")
    names = parse_metrics(e.metrics)
    if "pr" in names and e.n <= e.pr_k:
        raise ConfigError(f"eval.n: precision/recall with eval.pr_k={e.pr_k} needs more than {e.pr_k} samples")
    if e.features not in ("auto", "domain", "inception", "identity"):
        raise ConfigError(f"eval.features: expected auto, domain, inception or identity, got {e.features!r}")
    image_data = len(data_shape) == 3
    kind = resolve_kind(e.features, "image" if image_data else "points")
    if "class_acc" in names:
        if not cfg.model.conditional:
            raise ConfigError("eval.metrics: class_acc measures whether a conditional generator draws the "
                              "requested class; this model is unconditional (model.conditional=false)")
        if kind != "domain":
            raise ConfigError(f"eval.metrics: class_acc uses the domain network's classifier; set "
                              f"eval.features=domain (it is {e.features!r})")
    if kind == "inception" and e.every > 0:  # a run that never evaluates needs no weights
        try:
            weights_path(e.inception_weights)
        except FileNotFoundError as exc:
            raise ConfigError(f"eval.inception_weights: {exc} Every node needs the file; "
                              f"eval.features=domain evaluates offline.") from None


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous [start, end) of the ``n`` samples that ``rank`` generates."""
    return n * rank // world, n * (rank + 1) // world


class Evaluator:
    """Built once per run on every rank (collective), then ``run`` at each evaluation (collective)."""

    def __init__(self, cfg: EvalConfig, x: torch.Tensor, labels: Optional[torch.Tensor], data_kind: str,
                 class_names: tuple[str, ...] = (), rank: int = 0, world: int = 1,
                 device: torch.device = torch.device("cpu")):
        self.cfg, self.rank, self.world, self.device = cfg, rank, world, device
        self.metrics = parse_metrics(cfg.metrics)
        self.class_names = class_names
        self.net = self._shared_feature_net(x, labels, data_kind).to(device)
        if "class_acc" in self.metrics and not self.net.classifies:
            raise ConfigError("eval.metrics: class_acc needs a feature network trained on the data's classes; "
                              "the data set has no labels")
        self.real = self.real_stats = None
        if rank == 0:
            self.real = real_features(self.net, cfg, x, labels, device)
            self.real_stats = distances.GaussianStats.of(self.real, "real")
            log.info("evaluating %s on %d samples in %s (%d-d, %s, digest %s)", ",".join(self.metrics), cfg.n,
                     self.net.kind, self.net.dim, self.net.description, self.net.digest[:12])
            if "fid" in self.metrics:
                distances.warn_if_few_samples(cfg.n, self.net.dim)
            if "kid" in self.metrics and min(cfg.n, len(self.real)) < cfg.kid_subset_size:
                warnings.warn(f"KID subsets of {cfg.kid_subset_size} are capped at "
                              f"{min(cfg.n, len(self.real))} samples (eval.n or the real set)", RuntimeWarning)

    def _shared_feature_net(self, x, labels, data_kind) -> FeatureNet:
        """Rank 0 builds the network (training the domain one on first use) and shares it.

        Sharing the trained weights, rather than training on every node,
        guarantees one feature space even where nodes would train differently.
        """
        if self.world == 1:
            return build_feature_net(self.cfg, x, labels, data_kind)
        payload: list = [None]
        if self.rank == 0:
            net = build_feature_net(self.cfg, x, labels, data_kind)
            payload = [(net.kind, net.trained)]
        dist.broadcast_object_list(payload, src=0, device=self._collective_device())
        kind, domain_state = payload[0]
        if self.rank != 0:
            net = domain_net(domain_state) if kind == "domain" else build_feature_net(self.cfg, x, labels,
                                                                                      data_kind)
        digests: list = [None] * self.world
        dist.all_gather_object(digests, net.digest)
        if len(set(digests)) > 1:
            raise RuntimeError(f"the workers' {kind} feature networks differ (digests "
                               f"{', '.join(d[:12] for d in digests)}); give every node the same weights file")
        return net

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    @torch.no_grad()
    def run(self, generator: nn.Module) -> Scores:
        """Scores of ``generator`` (a whole, plain module in eval mode), identical on every rank."""
        started = time.perf_counter()
        start, end = shard(self.cfg.n, self.rank, self.world)
        # The latents of all n samples, so that sample i is the same whatever the worker count.
        z = torch.randn(self.cfg.n, generator.latent_dim, generator=torch.Generator().manual_seed(self.cfg.seed))
        requested = torch.arange(self.cfg.n) % len(self.class_names) if getattr(generator, "num_classes", 0) \
            else None
        feats, preds = [], []
        for idx in torch.arange(start, end).split(self.cfg.batch_size):
            zb = z[idx].to(self.device)
            with self._seeded_global_rng(int(idx[0])):
                fake = generator(zb) if requested is None else generator(zb, requested[idx].to(self.device))
            f, logits = extract_all(self.net, fake.float(), self.cfg.batch_size, self.device)
            feats.append(f)
            if logits is not None:
                preds.append(logits.argmax(1))
        local = torch.cat(feats) if feats else torch.zeros(0, self.net.dim)
        local_preds = torch.cat(preds) if preds else None
        fake, predicted = self._gather(local, local_preds)
        scores: Scores = {}
        if self.rank == 0:
            ev = Evaluation(self.cfg, self.real, self.real_stats, fake, predicted, requested, self.class_names)
            # numpy's BLAS would start a thread per core and fight the other workers on a shared node.
            with threadpool_limits(torch.get_num_threads(), user_api="blas"):
                for name in self.metrics:
                    scores.update(METRICS.get(name).compute(ev))
            scores["eval_seconds"] = time.perf_counter() - started
        if self.world > 1:
            box = [scores]
            dist.broadcast_object_list(box, src=0, device=self._collective_device())
            scores = box[0]
        return scores

    @contextlib.contextmanager
    def _seeded_global_rng(self, first: int) -> Iterator[None]:
        """What a generator draws from torch's global generators (a style-based G's per-pixel noise,
        ``noise_mode: random``, as the published metrics evaluate it) comes from ``eval.seed`` and the batch's
        first sample: the same seed gives the same scores, and training's own stream is put back after."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed((self.cfg.seed * 1_000_003 + first) % 2**63)
            yield

    def _gather(self, local: torch.Tensor, preds: Optional[torch.Tensor]):
        """Every rank's features (and predicted classes) on rank 0, in rank order."""
        if preds is not None:  # one collective: the prediction rides along as a last column
            local = torch.cat([local, preds.float().unsqueeze(1)], dim=1)
        if self.world > 1:
            width = local.shape[1]
            longest = max(end - start for start, end in (shard(self.cfg.n, r, self.world) for r in range(self.world)))
            padded = torch.zeros(longest, width, device=self._collective_device())
            padded[:len(local)] = local
            buckets = [torch.empty_like(padded) for _ in range(self.world)] if self.rank == 0 else None
            dist.gather(padded, buckets, dst=0)
            if self.rank != 0:
                return None, None
            local = torch.cat([b[:end - start].cpu() for b, (start, end) in
                               zip(buckets, (shard(self.cfg.n, r, self.world) for r in range(self.world)))])
        if preds is not None:
            return local[:, :-1], local[:, -1].long()
        return local, None
