"""The typed configuration tree.

One dataclass per concern; each field carries its docstring right below it (``distgan config keys``
prints them, docs/config.md is generated from them). ``Config.from_dict`` checks every key, type and
range that the config alone decides; what needs the registries (model families, data sets, losses,
metrics) is checked by ``distgan.checks.validate`` before any Ray work starts. A config crosses the Ray
boundary as a plain dict (``Config.to_dict`` / ``Config.from_dict``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from distgan.config.errors import ConfigError, check_seed, positive
from distgan.config.augment_schema import AugmentConfig, check_augment
from distgan.config.data_schema import DataConfig, DegradationConfig
from distgan.config.optim_schema import OptimConfig, check_optim
from distgan.config.regularizer_schema import GRegConfig, check_g_reg
from distgan.config.scaling_schema import ScalingConfig, check_scaling
from distgan.config.stylegan_schema import StyleGAN2Config
from distgan.config.typed import build_section, plain

# --------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------


@dataclass
class TrainConfig:
    steps: int = 1500
    """Generator updates in total (each preceded by ``n_critic`` D updates)."""
    batch_size: int = 64
    """Real (and fake) samples per worker per micro-step."""
    n_critic: int = 1
    """Discriminator updates before each generator update."""
    reuse_fakes: Union[bool, Literal["auto"]] = "auto"
    """G's step trains on the fakes D just saw instead of new ones: one G forward per step instead of two
    (as PyTorch's DCGAN example and Ray's PBT-DCGAN do), +20-24% steps/s on the shipped DCGAN. ``true`` needs
    n_critic 1 and no gradient accumulation; ``auto`` reuses exactly when those hold (the shipped digits
    configs: quality measured equal, docs/performance.md); ``false`` draws fresh fakes for G."""
    channels_last: bool = False
    """Keep image batches and convolution weights in NHWC order (``torch.channels_last``), which convolution
    kernels prefer on GPUs with tensor cores (bf16/fp16) and on oneDNN CPUs (docs/performance.md has the
    CPU numbers). Convolutional families at ZeRO-0 only: under ZeRO 1-3 DeepSpeed keeps the parameters as
    views of flat NCHW buffers, and NHWC batches alone gain nothing. May be changed on resume."""
    compile: bool = False
    """Compile G's and D's forward passes with ``torch.compile`` (in place: parameters, state-dict keys and
    checkpoints are the eager module's). Pays a compilation at the start (tens of seconds on CPU; again for
    each new input shape) for faster steps after. ZeRO 0-2; D stays eager with a gradient penalty (r1, gp),
    whose double backward compiled autograd does not support. May be changed on resume."""
    log_every: int = 25
    """Generator steps between metric reports (losses are synced only then)."""
    checkpoint_every: int = 500
    """Generator steps between checkpoints; the last step is always saved."""
    sample_every: int = 250
    """Generator steps between sample grids written to ``samples/``."""
    keep_checkpoints: int = 3
    """How many of the most recent checkpoints to keep."""
    seed: int = 0
    """Seeds model init (same on every rank), data order and latents (distinct per rank)."""
    preemption_check_every: int = 10
    """Every this many steps all ranks ask Ray Train whether a node of the group is being drained for
    preemption (``ray.train.get_preemption_info``: what a cloud's spot reclaim or KubeRay's scale-down tells
    Ray, a barrier across the workers); at the first notice every rank checkpoints that step and training goes
    on until the node goes. 0 never asks. (A SIGTERM to a worker checkpoints and stops at once, whatever this
    is.)"""
    max_failures: int = 3
    """Worker-group restarts Ray Train may do before the run fails; -1 for no limit (an elastic run on spot
    capacity, where every reclaimed node and every preemption notice is one)."""
    collective_timeout_s: float = 600.0
    """Seconds a worker waits for the others at a collective (torch's all-reduces and broadcasts, and Ray
    Train's barrier inside every metrics or checkpoint report) before the wait raises: the worker fails, and
    Ray Train restarts the whole group from the last checkpoint (counted against ``max_failures``), so a
    stalled rank costs this long, not an endless wait. 600 s is torch's NCCL and DeepSpeed's default, far
    beyond a healthy step, yet above the longest time one rank works while the others wait (rank 0 training
    the domain feature network or computing real-data features before the first evaluation, writing a
    checkpoint or export); raise it for very large evaluation sets. At most a day."""
    max_consecutive_skips: int = 20
    """Stop the run (``NonFiniteError``) when G or D has skipped this many optimizer steps in a row because
    its loss or gradients were not finite on some worker (each such step is skipped on every worker and
    counted as ``skipped_g``/``skipped_d``); 0 never stops."""
    init_from: Optional[str] = None
    """Start G from this exported generator (a run directory, checkpoint directory or
    ``generator.safetensors``) of the same architecture: the GAN stage of SR starts from its PSNR stage."""
    storage: Optional[str] = None
    """Where runs are kept when the command gives no ``--storage``: a directory, or a URI (``s3://bucket/runs``;
    ``distgan train`` and ``submit`` only, see ``distgan.persist.storage``). Default ``./runs`` (``distgan submit``:
    ``DISTGAN_STORAGE``)."""


@dataclass
class EngineConfig:
    zero_stage: Optional[int] = None
    """ZeRO stage for this engine; ``null`` inherits ``deepspeed.zero_stage``."""
    gradient_accumulation_steps: int = 1
    """Micro-batches accumulated before each optimizer step of this engine."""
    gradient_clipping: float = 0.0
    """Global gradient-norm clip for this engine; 0 disables it."""
    precision: Optional[Literal["fp32", "bf16", "fp16"]] = None
    """Compute precision of this engine; ``null`` inherits ``deepspeed.precision``. A D in fp32 beside a bf16 G
    is common: tensors crossing between the networks are cast to the receiving engine's dtype."""


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 0
    """ZeRO stage (0-3) for both engines unless ``g``/``d`` override it."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Compute precision of both engines unless ``g``/``d`` override it; fp16 needs GPUs (loss scaling)."""
    g: EngineConfig = field(default_factory=EngineConfig)
    """Per-engine settings of the generator."""
    d: EngineConfig = field(default_factory=EngineConfig)
    """Per-engine settings of the discriminator."""
    bucket_size: int = 50_000_000
    """ZeRO's gradient-reduction and all-gather bucket, in elements. DeepSpeed's own default (5e8) reserves
    2 GB (fp32) per engine, more than a GAN's networks and their optimizer state together."""
    param_persistence_threshold: int = 100_000
    """ZeRO-3: parameters with fewer elements stay whole on every rank (no gather per forward, but no memory
    saved on them); 0 partitions every parameter. Small-layer GANs save little at ZeRO-3 unless lowered."""

    def stage(self, net: str) -> int:
        override = getattr(self, net).zero_stage
        return self.zero_stage if override is None else override

    def precision_of(self, net: str) -> str:
        override = getattr(self, net).precision
        return self.precision if override is None else override

    def precision_key(self, net: str) -> str:
        """The key that decides ``net``'s precision, for messages."""
        return f"deepspeed.{net}.precision" if getattr(self, net).precision is not None else "deepspeed.precision"


@dataclass
class ModelConfig:
    family: str = "dcgan"
    """Model family from the model registry: ``dcgan``, ``mlp``, ``stylegan2`` (generation from z) or ``srresnet``,
    ``rrdb`` (super-resolution: G maps a low-resolution image to one ``scale`` times larger)."""
    latent_dim: int = 64
    """Size of the latent vector z."""
    g_width: int = 32
    """Generator width: base channels (dcgan) or hidden units (mlp)."""
    d_width: int = 32
    """Discriminator width: base channels (dcgan) or hidden units (mlp)."""
    g_depth: int = 0
    """Extra layers: 3x3 convs per resolution block (dcgan) or hidden layers (mlp)."""
    d_depth: int = 0
    """Same as ``g_depth`` for the discriminator."""
    g_norm: Literal["batch", "none"] = "batch"
    """Normalization in G's hidden layers."""
    d_norm: Literal["batch", "none"] = "batch"
    """Normalization in D's hidden layers; reals and fakes go through D as separate batches."""
    conditional: bool = False
    """Condition G and D on class labels (conditional GAN); the data set must carry labels."""
    embed_dim: int = 32
    """Size of G's learned label embedding, concatenated to z."""
    d_conditioning: Literal["projection", "concat"] = "projection"
    """How D sees the label: ``projection`` (Miyato & Koyama, 2018: an inner product of a label embedding with
    D's features) or ``concat`` (one-hot labels as extra input channels or features)."""
    d_spectral_norm: bool = False
    """Spectral normalization of every D layer (Miyato et al.), a Lipschitz constraint; use with d_norm none."""
    scale: int = 4
    """Super-resolution families: the upscaling factor, 2, 4 or 8."""
    blocks: int = 16
    """Super-resolution families: G's residual blocks (SRResNet 16; RRDBNet 23 residual-in-residual blocks)."""
    growth: int = 32
    """rrdb: channels each dense layer adds inside a residual dense block."""
    discriminator: Literal["vgg", "unet"] = "vgg"
    """Super-resolution families: D is ``vgg`` (SRGAN's strided VGG-style classifier, one logit per image) or
    ``unet`` (Real-ESRGAN's U-Net with spectral norm, one logit per pixel)."""
    checkpointing: bool = False
    """Activation checkpointing of G's blocks: recompute them in the backward pass to save memory."""
    stylegan2: StyleGAN2Config = field(default_factory=StyleGAN2Config)
    """Architecture of ``family: stylegan2`` (mapping network, channels, minibatch std, style mixing, noise)."""


@dataclass
class RegularizerConfig:
    type: str = "none"
    """D regularizer from the registry: ``none``, ``r1`` (penalty on reals) or ``gp`` (WGAN-GP)."""
    weight: float = 10.0
    """Strength: R1's gamma (the penalty is gamma/2 E||grad D||^2) or WGAN-GP's lambda."""
    interval: int = 1
    """Apply every this many steps as its own D step, scaled by the interval, with D's Adam lr and betas
    corrected as in StyleGAN2 (lazy regularization); 1 adds it to every D step."""


@dataclass
class PixelLossConfig:
    type: Literal["l1", "l2"] = "l1"
    """``l1`` (mean absolute error) or ``l2`` (mean squared error)."""
    weight: float = 1.0
    """Weight in G's loss; 0 drops the term."""


@dataclass
class PerceptualLossConfig:
    weight: float = 0.0
    """Weight in G's loss; 0 drops the term (and needs no VGG19 weights)."""
    layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    """VGG19 layers (``conv1_1`` .. ``conv5_4``, features before their ReLU) -> weight."""
    criterion: Literal["l1", "l2"] = "l1"
    """Distance between feature maps."""
    vgg_weights: Optional[str] = None
    """Path of torchvision's ImageNet VGG19 weights (``vgg19-dcbb9e9d.pth``); null reads
    ``DISTGAN_VGG19_WEIGHTS``. Must exist on every node."""


@dataclass
class LossConfig:
    type: str = "nonsaturating"
    """Adversarial loss from the loss registry: ``nonsaturating``, ``hinge``, ``wgan``, ``lsgan``, ``ragan``."""
    d_reg: RegularizerConfig = field(default_factory=RegularizerConfig)
    """Regularizer of the discriminator."""
    g_reg: GRegConfig = field(default_factory=GRegConfig)
    """Regularizer of the generator (StyleGAN2's path length)."""
    adversarial_weight: float = 1.0
    """Weight of the adversarial term in G's loss. Super-resolution: 0 trains G on the pixel and perceptual
    losses alone, without D (the PSNR-oriented stage)."""
    pixel: PixelLossConfig = field(default_factory=PixelLossConfig)
    """Super-resolution: distance between G's output and the high-resolution target."""
    perceptual: PerceptualLossConfig = field(default_factory=PerceptualLossConfig)
    """Super-resolution: distance between VGG19 features of G's output and of the target."""


@dataclass
class EmaConfig:
    enabled: bool = True
    """Keep an exponential moving average of G for samples and export."""
    half_life_kimg: float = 2.0
    """Half-life of the average in thousands of generated images (global)."""
    rampup: Optional[float] = 0.05
    """Caps the half-life at this fraction of images seen so far; null disables."""


@dataclass
class EvalConfig:
    every: int = 500
    """Generator steps between evaluations of G_ema (and at the last step); 0 turns evaluation off."""
    metrics: str = "auto"
    """Comma-separated: ``fid``, ``kid``, ``pr`` (improved precision/recall), ``class_acc`` (conditional
    models: how often a classifier trained on the real data sees the requested class); for super-resolution
    ``psnr``, ``ssim`` on the validation images. ``auto``: fid,kid,pr, or psnr,ssim for super-resolution."""
    n: int = 2000
    """Generated samples per evaluation, split across the workers (published FIDs use 50,000)."""
    features: str = "auto"
    """Feature space: ``inception`` (needs ``inception_weights``), ``domain`` (a network trained on the real
    data, offline), ``identity`` (the samples; for points), or ``auto`` (domain for images, identity for points)."""
    inception_weights: Optional[str] = None
    """Path of the FID Inception-v3 weights (``pt_inception-2015-12-05-6726825d.pth``); null reads
    ``DISTGAN_INCEPTION_WEIGHTS``. Must exist on every node when the run evaluates (``eval.every`` > 0)."""
    batch_size: int = 250
    """Samples per forward pass of G and of the feature network."""
    reference_n: int = 10000
    """Real images evaluation compares with when the data streams (``data.stream``): a subset of this many,
    chosen by ``eval.seed``; the domain feature network is trained on it too. In-memory data sets use all
    their samples."""
    seed: int = 0
    """Seeds the evaluation latents: the same samples at every evaluation, whatever the worker count."""
    kid_subsets: int = 100
    """Random subsets KID is averaged over."""
    kid_subset_size: int = 1000
    """Samples per KID subset (capped at the sample count)."""
    pr_k: int = 3
    """Nearest neighbour that sets the manifold radius for precision/recall."""
    cache_dir: Optional[str] = None
    """Where feature networks and real-data features are cached; null reads ``DISTGAN_CACHE_DIR``, else
    ``~/.cache/distgan``."""
    crop_border: Optional[int] = None
    """Super-resolution: pixels removed from every edge before PSNR/SSIM; null uses ``model.scale`` (the
    usual protocol)."""
    y_channel: bool = True
    """Super-resolution: PSNR/SSIM on the BT.601 luma (Y of YCbCr), as SR papers report them; false uses RGB."""


@dataclass
class SchedulerConfig:
    type: str = "fifo"
    """Trial scheduler from the registry (``distgan.sweeps.schedulers``): ``fifo`` runs every trial to the
    end; ``asha`` stops poor trials early; ``pbt`` copies good trials' checkpoints into poor ones and perturbs
    their values (population based training)."""
    grace_period: int = 0
    """ASHA: steps a trial runs before it may be stopped; 0 means ``eval.every``."""
    reduction_factor: int = 2
    """ASHA: keep 1 of this many trials at each rung."""
    perturbation_interval: int = 0
    """PBT: steps between exploit/explore decisions; 0 means ``train.checkpoint_every``."""
    quantile_fraction: float = 0.25
    """PBT: the bottom fraction copies from the top fraction."""
    resample_probability: float = 0.25
    """PBT: chance a perturbed value is drawn afresh from its domain instead of scaled by 0.8 or 1.2 (a range)
    or moved to a neighbouring option (a ``choice``)."""
    synch: bool = False
    """PBT: wait for every trial to reach a perturbation point before deciding (suits small populations)."""


@dataclass
class TuneConfig:
    metric: str = "fid"
    """The objective: a score of an evaluation metric (``fid``, ``kid``, ``precision``, ``recall``,
    ``class_acc``; ``psnr``, ``ssim`` for super-resolution), never a GAN loss; ``eval.metrics`` must produce
    it."""
    mode: Literal["auto", "min", "max"] = "auto"
    """``auto``: the metric's own direction (``distgan.metrics.registry``): min for fid and kid, max for the
    others."""
    num_samples: int = 4
    """Trials to sample (with grid entries: repeats of the whole grid)."""
    max_concurrent: int = 0
    """Trials at once; 0 fits as many as the cluster's CPUs (or GPUs) hold."""
    search: str = "random"
    """Searcher from the registry (``distgan.sweeps.searchers``): ``random`` (random and grid search) or
    ``optuna`` (TPE)."""
    seed: Optional[int] = None
    """Seeds the searcher, for a reproducible sequence of trials."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """Early stopping or population based training."""
    space: dict[str, Any] = field(default_factory=dict)
    """Dotted config key -> domain, e.g. ``optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}``; see
    ``distgan/sweeps/space.py``."""


@dataclass
class TrackingConfig:
    wandb: bool = True
    """Log to Weights & Biases from rank 0 (offline without an API key)."""
    project: str = "distgan"
    """W&B project."""
    entity: Optional[str] = None
    """W&B entity (team or user); null uses the key's default."""
    mode: Literal["auto", "online", "offline"] = "auto"
    """``auto`` is online when an API key is configured, offline otherwise."""
    report: bool = True
    """Write ``report.html`` (what ``distgan report`` writes: curves, findings, samples, config) into the run
    directory when the run finishes."""


@dataclass
class Config:
    train: TrainConfig = field(default_factory=TrainConfig)
    """Step counts, intervals and seed."""
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    """Workers and devices."""
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    """ZeRO and precision for the G and D engines."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizers of G and D."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Generator and discriminator architecture."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Adversarial loss."""
    ema: EmaConfig = field(default_factory=EmaConfig)
    """Exponential moving average of G."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Augmentation of D's inputs."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training data."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation metrics during training and for ``distgan evaluate``."""
    tune: TuneConfig = field(default_factory=TuneConfig)
    """Hyperparameter sweeps (``distgan tune``); ignored by ``distgan train``."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Experiment tracking."""

    # -- construction ------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict) -> "Config":
        """Build a Config from a nested plain dict, checking keys, types and ranges (not registry names)."""
        cfg = build_section(cls, raw, "")
        check_ranges(cfg)
        return cfg

    def to_dict(self) -> dict:
        """Plain nested dict (tuples become lists) for YAML, JSON and Ray."""
        return plain(dataclasses.asdict(self))


# --------------------------------------------------------------------------
# Ranges: what the config alone decides (names a registry resolves are checked by distgan.checks)
# --------------------------------------------------------------------------

MAX_COLLECTIVE_TIMEOUT_S = 86_400.0

PATH_KEYS = ("data.path", "data.lr_path", "data.val_path", "train.init_from", "train.storage",
             "eval.inception_weights", "eval.cache_dir", "loss.perceptual.vgg_weights")
"""Config values that name local files or folders (or a URI, left as it is)."""


def check_ranges(cfg: Config) -> None:
    _check_train(cfg)
    check_scaling(cfg.scaling, cfg.train.batch_size)
    if not 0 < cfg.scaling.start_timeout_s <= MAX_COLLECTIVE_TIMEOUT_S:  # never forever: that is the hang it ends
        raise ConfigError(f"scaling.start_timeout_s: must be > 0 and at most {MAX_COLLECTIVE_TIMEOUT_S:.0f} (a day), "
                          f"got {cfg.scaling.start_timeout_s!r}")
    _check_paths_not_empty(cfg)
    _check_deepspeed(cfg)
    check_augment(cfg.augment)
    check_g_reg(cfg.loss.g_reg, cfg.deepspeed.stage("g"))

    m = cfg.model
    for name in ("latent_dim", "g_width", "d_width"):
        positive(f"model.{name}", getattr(m, name))
    positive("model.embed_dim", m.embed_dim)
    positive("model.g_depth", m.g_depth, allow_zero=True)
    positive("model.d_depth", m.d_depth, allow_zero=True)
    positive("ema.half_life_kimg", cfg.ema.half_life_kimg)
    if cfg.ema.rampup is not None:
        positive("ema.rampup", cfg.ema.rampup)

    d = cfg.data
    if d.path is None and d.name is None:
        raise ConfigError("data: set data.name (a built-in data set) or data.path (a folder of images)")
    positive("data.resolution", d.resolution)
    positive("data.num_samples", d.num_samples)
    positive("data.prefetch_batches", d.prefetch_batches)
    if not d.cpus_per_task >= 0.01:  # 0 would run tasks on CPUs the workers hold, unbounded (Ray Data: never)
        raise ConfigError(f"data.cpus_per_task: must be at least 0.01 (a fraction shares a CPU), got "
                          f"{d.cpus_per_task!r}")
    positive("eval.reference_n", cfg.eval.reference_n)
    if d.channels not in (1, 3):
        raise ConfigError(f"data.channels: must be 1 or 3, got {d.channels!r}")
    positive("eval.every", cfg.eval.every, allow_zero=True)
    for key, seed in (("data.seed", d.seed), ("eval.seed", cfg.eval.seed), ("tune.seed", cfg.tune.seed)):
        check_seed(key, seed)


def _check_train(cfg: Config) -> None:
    t = cfg.train
    for name in ("steps", "batch_size", "n_critic", "log_every", "checkpoint_every", "sample_every",
                 "keep_checkpoints"):
        positive(f"train.{name}", getattr(t, name))
    positive("train.preemption_check_every", t.preemption_check_every, allow_zero=True)
    if t.max_failures < -1:
        raise ConfigError(f"train.max_failures: must be >= 0, or -1 for no limit, got {t.max_failures}")
    positive("train.collective_timeout_s", t.collective_timeout_s)
    if t.collective_timeout_s > MAX_COLLECTIVE_TIMEOUT_S:  # beyond it a hang is a hang; timedelta overflows later
        raise ConfigError(f"train.collective_timeout_s: must be at most {MAX_COLLECTIVE_TIMEOUT_S:.0f} (a day), "
                          f"got {t.collective_timeout_s!r}")
    positive("train.max_consecutive_skips", t.max_consecutive_skips, allow_zero=True)
    check_seed("train.seed", t.seed)


def _check_deepspeed(cfg: Config) -> None:
    t, ds = cfg.train, cfg.deepspeed
    for key, stage in (("deepspeed.zero_stage", ds.zero_stage), ("deepspeed.g.zero_stage", ds.g.zero_stage),
                       ("deepspeed.d.zero_stage", ds.d.zero_stage)):
        if stage is not None and stage not in (0, 1, 2, 3):
            raise ConfigError(f"{key}: must be 0, 1, 2 or 3, got {stage!r}")
    if t.channels_last and (ds.stage("g") or ds.stage("d")):
        raise ConfigError(f"train.channels_last: needs ZeRO-0 for G and D (got stages {ds.stage('g')} and "
                          f"{ds.stage('d')}): DeepSpeed keeps ZeRO 1-3 parameters as views of flat buffers, which "
                          f"cannot be laid out NHWC")
    if t.compile and (ds.stage("g") == 3 or ds.stage("d") == 3):
        raise ConfigError(f"train.compile: needs ZeRO 0-2 for G and D (got stages {ds.stage('g')} and "
                          f"{ds.stage('d')}): ZeRO-3 gathers and frees parameters in module hooks, which "
                          f"torch.compile breaks its graphs on")
    if t.reuse_fakes is True and (t.n_critic != 1 or ds.g.gradient_accumulation_steps != 1
                          or ds.d.gradient_accumulation_steps != 1):
        raise ConfigError("train.reuse_fakes: G's step reuses the one batch of fakes of the D step before it, so "
                          "it needs train.n_critic=1 and gradient_accumulation_steps 1 for G and D")
    positive("deepspeed.bucket_size", ds.bucket_size)
    positive("deepspeed.param_persistence_threshold", ds.param_persistence_threshold, allow_zero=True)
    for net in ("g", "d"):
        positive(f"deepspeed.{net}.gradient_accumulation_steps", getattr(ds, net).gradient_accumulation_steps)
        positive(f"deepspeed.{net}.gradient_clipping", getattr(ds, net).gradient_clipping, allow_zero=True)
    check_optim(cfg.optim)
    for net in ("g", "d"):
        if ds.precision_of(net) == "fp16" and cfg.scaling.use_gpu is False:
            raise ConfigError(f"{ds.precision_key(net)}: fp16 needs GPUs (scaling.use_gpu is false); use fp32 or bf16 "
                              f"on CPU")


def reuses_fakes(cfg: Config) -> bool:
    """Whether G's step trains on the fakes of the D step before it (``train.reuse_fakes``, ``auto`` resolved):
    there must be exactly one D micro-batch per G micro-batch to reuse."""
    if cfg.train.reuse_fakes != "auto":
        return cfg.train.reuse_fakes
    ds = cfg.deepspeed
    return cfg.train.n_critic == 1 and ds.g.gradient_accumulation_steps == 1 == ds.d.gradient_accumulation_steps


def _check_paths_not_empty(cfg: Config) -> None:
    """An empty path is the working directory (``Path("")``): data.path '' would search it recursively."""
    for key in PATH_KEYS:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if node is not None and not node.strip():
            raise ConfigError(f"{key}: empty; give a path, or null for none")
