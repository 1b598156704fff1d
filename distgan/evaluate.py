"""Evaluation of a generator: FID, KID, precision/recall and class accuracy, across the workers.

Every rank generates its contiguous share of ``eval.n`` samples from latents
drawn with ``eval.seed`` (sample i gets the same latent whatever the worker
count), extracts their features, and rank 0 gathers them, compares them with
the cached real-data features and broadcasts the scores, so every rank
returns (and reports) the same dict. The evaluator never touches the training
RNG streams: a resumed run draws the same batches whether or not it evaluated.

Knows nothing of Ray; the collectives are torch.distributed's, and with one
process (``distgan evaluate``) there are none.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
from threadpoolctl import threadpool_limits
from torch import nn

from distgan.config import Config, ConfigError, EvalConfig, positive
from distgan.metrics import distances
from distgan.metrics.features import FeatureNet, build_feature_net, domain_net, extract_all, real_features
from distgan.registry import Registry

log = logging.getLogger(__name__)

Scores = dict[str, float]
Metric = Callable[["Evaluation"], Scores]
METRICS: Registry[Metric] = Registry("evaluation metric")


DEFAULT_METRICS = "fid,kid,pr"
"""What ``eval.metrics: auto`` means for generation (super-resolution: ``distgan.sr_validation``)."""


def parse_metrics(spec: str) -> list[str]:
    if spec.strip() == "auto":
        spec = DEFAULT_METRICS
    names = [name.strip() for name in spec.split(",") if name.strip()]
    for name in names:
        METRICS.get(name, key="eval.metrics")
    if len(set(names)) != len(names):
        raise ConfigError(f"eval.metrics: {spec!r} names a metric twice")
    return names


class Evaluation:
    """What one evaluation measured, handed to each metric (rank 0 only)."""

    def __init__(self, cfg: EvalConfig, real: torch.Tensor, real_stats: distances.GaussianStats,
                 fake: torch.Tensor, predicted: Optional[torch.Tensor], requested: Optional[torch.Tensor],
                 class_names: tuple[str, ...]):
        self.cfg, self.real, self.real_stats, self.fake = cfg, real, real_stats, fake
        self.predicted, self.requested, self.class_names = predicted, requested, class_names


@METRICS.register("fid")
def _fid(ev: Evaluation) -> Scores:
    return {"fid": distances.frechet_distance(distances.GaussianStats.of(ev.fake, "generated"), ev.real_stats)}


@METRICS.register("kid")
def _kid(ev: Evaluation) -> Scores:
    with warnings.catch_warnings():  # a capped subset size is a property of eval.n, said once at start
        warnings.simplefilter("ignore", RuntimeWarning)
        result = distances.kid(ev.fake, ev.real, ev.cfg.kid_subsets, ev.cfg.kid_subset_size, ev.cfg.seed)
    return {"kid": result.mean, "kid_std": result.std}


@METRICS.register("pr")
def _precision_recall(ev: Evaluation) -> Scores:
    # Equal-sized sets: the k-NN radii shrink as a set grows, so unequal sizes bias the two numbers.
    real = ev.real
    if len(real) > len(ev.fake):
        real = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(ev.cfg.seed))[:len(ev.fake)]]
    result = distances.precision_recall(real, ev.fake, ev.cfg.pr_k)
    return {"precision": result.precision, "recall": result.recall}


@METRICS.register("class_acc")
def _class_accuracy(ev: Evaluation) -> Scores:
    hits = (ev.predicted == ev.requested).double()
    scores = {"class_acc": float(hits.mean())}
    for k, name in enumerate(ev.class_names):
        scores[f"class_acc/{name}"] = float(hits[ev.requested == k].mean())
    return scores


def check_config(cfg: Config) -> None:
    """The ``eval`` section against the data and the model (called by ``distgan.config_checks.validate``)."""
    from distgan import data as data_mod
    from distgan import models
    from distgan.metrics.features import resolve_kind

    e = cfg.eval
    positive("eval.every", e.every, allow_zero=True)
    if models.is_super_resolution(cfg.model):
        from distgan import sr_validation

        sr_validation.check_config(cfg)
        return
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
    image_data = len(data_mod.data_shape(cfg.data)) == 3
    kind = resolve_kind(e.features, "image" if image_data else "points")
    if "class_acc" in names:
        if not cfg.model.conditional:
            raise ConfigError("eval.metrics: class_acc measures whether a conditional generator draws the "
                              "requested class; this model is unconditional (model.conditional=false)")
        if kind != "domain":
            raise ConfigError(f"eval.metrics: class_acc uses the domain network's classifier; set "
                              f"eval.features=domain (it is {e.features!r})")
    if kind == "inception":
        from distgan.metrics.inception import weights_path

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
                    scores.update(METRICS.get(name)(ev))
            scores["eval_seconds"] = time.perf_counter() - started
        if self.world > 1:
            box = [scores]
            dist.broadcast_object_list(box, src=0, device=self._collective_device())
            scores = box[0]
        return scores

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


def format_table(scores: Scores) -> str:
    width = max(len(k) for k in scores)
    return "\n".join(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}"
                     for k, v in scores.items())




# -- on demand: ``distgan evaluate`` ------------------------------------------------


def config_for(source: Path, meta: dict, overrides: Sequence[str] = ()):
    """The run's config (its ``config.yaml``), else one rebuilt from the generator's description."""
    from distgan.config import Config, load_config, parse_override, set_dotted

    weights_dir = source if source.is_dir() else source.parent
    for candidate in (weights_dir, weights_dir.parent):
        if (candidate / "config.yaml").is_file():
            return load_config(candidate / "config.yaml", tuple(overrides))
    if "data_config" not in meta:
        raise ConfigError(f"{source}: no config.yaml beside it and its generator.json does not name the data "
                          f"set; evaluate the run directory instead")
    raw = {"model": meta["model"], "data": meta["data_config"]}
    for item in overrides:
        set_dotted(raw, *parse_override(item))
    return Config.from_dict(raw)


def evaluate_generator(source, overrides: Sequence[str] = ()) -> tuple[Scores, dict]:
    """Evaluate a run directory, checkpoint or ``generator.safetensors`` in this process.

    ``overrides`` are ``eval.*`` (or ``data.*``) ``KEY=VALUE`` strings; returns (scores, generator metadata).
    """
    from distgan import data
    from distgan.export import find_generator, load_generator
    from distgan.storage import is_uri

    # A generator in a bucket is evaluated from its downloaded copy, which holds the run's config.yaml.
    source = find_generator(source).parent if is_uri(source) else Path(source)
    module, meta = load_generator(source)
    cfg = config_for(source, meta, overrides)
    if meta.get("task") == "sr":
        return _validate_super_resolution(source, module, meta, cfg)
    dataset = data.load_dataset(cfg.data)
    if tuple(dataset.x.shape[1:]) != tuple(meta["data_shape"]):
        raise ConfigError(f"{source}: the generator makes samples of shape {tuple(meta['data_shape'])}, but the "
                          f"data set gives {tuple(dataset.x.shape[1:])}; check data.* overrides")
    class_names = tuple(meta.get("class_names") or ())
    evaluator = Evaluator(cfg.eval, dataset.x, dataset.labels, dataset.kind, class_names)
    scores = evaluator.run(module)
    info = {"generator": str(source), "step": meta.get("step"), "n": cfg.eval.n, "seed": cfg.eval.seed,
            "features": evaluator.net.kind, "features_digest": evaluator.net.digest[:16]}
    return scores, info


def _validate_super_resolution(source: Path, module: nn.Module, meta: dict, cfg: Config) -> tuple[Scores, dict]:
    """PSNR/SSIM of an SR generator on its run's validation images, with the bicubic baseline."""
    from distgan.data.sr import load_sr
    from distgan.sr_validation import SRValidator, crop_border

    sr_data = load_sr(cfg.data, cfg.model.scale)
    scores = SRValidator(cfg, sr_data.val_lr, sr_data.val_hr).run(module)
    info = {"generator": str(source), "step": meta.get("step"), "images": len(sr_data.val_lr),
            "scale": cfg.model.scale, "crop_border": crop_border(cfg), "y_channel": cfg.eval.y_channel}
    return scores, info
