"""Validation of a config's values and of how its sections fit together.

``Config.from_dict`` runs ``validate`` on every config it builds, so nothing
reaches Ray that could fail later for a reason knowable now. Ranges are checked
here; names are resolved through their registries (models, data sets, losses,
metrics), each of which checks its own section and names the offending key.
"""

from __future__ import annotations

from distgan.config import PATH_KEYS, Config, ConfigError, positive

MAX_COLLECTIVE_TIMEOUT_S = 86_400.0


def validate(cfg: Config) -> None:
    """Range and cross-section checks; registries check names lazily below."""
    t = cfg.train
    for name in ("steps", "batch_size", "n_critic", "log_every", "checkpoint_every", "sample_every",
                 "keep_checkpoints"):
        positive(f"train.{name}", getattr(t, name))
    positive("train.max_failures", t.max_failures, allow_zero=True)
    positive("train.collective_timeout_s", t.collective_timeout_s)
    if t.collective_timeout_s > MAX_COLLECTIVE_TIMEOUT_S:  # beyond it a hang is a hang; timedelta overflows later
        raise ConfigError(f"train.collective_timeout_s: must be at most {MAX_COLLECTIVE_TIMEOUT_S:.0f} (a day), "
                          f"got {t.collective_timeout_s!r}")
    positive("train.max_consecutive_skips", t.max_consecutive_skips, allow_zero=True)
    positive("train.seed", t.seed, allow_zero=True)
    positive("scaling.num_workers", cfg.scaling.num_workers)
    positive("scaling.cpus_per_worker", cfg.scaling.cpus_per_worker)
    _check_paths_not_empty(cfg)

    if t.channels_last and cfg.model.family == "mlp":
        raise ConfigError("train.channels_last: the mlp family has no images or convolutions to lay out; "
                          "use it with dcgan, srresnet or rrdb")
    ds = cfg.deepspeed
    if t.channels_last and (ds.stage("g") or ds.stage("d")):
        raise ConfigError(f"train.channels_last: needs ZeRO-0 for G and D (got stages {ds.stage('g')} and "
                          f"{ds.stage('d')}): DeepSpeed keeps ZeRO 1-3 parameters as views of flat buffers, which "
                          f"cannot be laid out NHWC")
    if t.compile and (ds.stage("g") == 3 or ds.stage("d") == 3):
        raise ConfigError(f"train.compile: needs ZeRO 0-2 for G and D (got stages {ds.stage('g')} and "
                          f"{ds.stage('d')}): ZeRO-3 gathers and frees parameters in module hooks, which "
                          f"torch.compile breaks its graphs on")
    if t.reuse_fakes and (t.n_critic != 1 or ds.g.gradient_accumulation_steps != 1
                          or ds.d.gradient_accumulation_steps != 1):
        raise ConfigError("train.reuse_fakes: G's step reuses the one batch of fakes of the D step before it, so "
                          "it needs train.n_critic=1 and gradient_accumulation_steps 1 for G and D")
    for key, stage in (("deepspeed.zero_stage", ds.zero_stage), ("deepspeed.g.zero_stage", ds.g.zero_stage),
                       ("deepspeed.d.zero_stage", ds.d.zero_stage)):
        if stage is not None and stage not in (0, 1, 2, 3):
            raise ConfigError(f"{key}: must be 0, 1, 2 or 3, got {stage!r}")
    positive("deepspeed.bucket_size", ds.bucket_size)
    positive("deepspeed.param_persistence_threshold", ds.param_persistence_threshold, allow_zero=True)
    for net in ("g", "d"):
        positive(f"deepspeed.{net}.gradient_accumulation_steps", getattr(ds, net).gradient_accumulation_steps)
        positive(f"deepspeed.{net}.gradient_clipping", getattr(ds, net).gradient_clipping, allow_zero=True)
        opt = getattr(cfg.optim, net)
        positive(f"optim.{net}.lr", opt.lr)
        positive(f"optim.{net}.eps", opt.eps)
        positive(f"optim.{net}.weight_decay", opt.weight_decay, allow_zero=True)
        for i, beta in enumerate(opt.betas):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"optim.{net}.betas[{i}]: must be in [0, 1), got {beta!r}")
    if ds.precision == "fp16" and cfg.scaling.use_gpu is False:
        raise ConfigError("deepspeed.precision: fp16 needs GPUs (scaling.use_gpu is false); use fp32 or bf16 on CPU")

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
    if d.channels not in (1, 3):
        raise ConfigError(f"data.channels: must be 1 or 3, got {d.channels!r}")

    # Names resolved through registries, imported here so the error is early.
    from distgan import data as data_mod
    from distgan import evaluate, models, search_space

    models.check(cfg)
    data_mod.check(cfg)
    if cfg.train.init_from is not None:
        from distgan.export import check_init_from

        check_init_from(cfg)
    _check_loss(cfg)
    _check_augment(cfg)
    evaluate.check_config(cfg)
    if cfg.tune.space:
        search_space.check_config(cfg)


def _check_paths_not_empty(cfg: Config) -> None:
    """An empty path is the working directory (``Path("")``): data.path '' would search it recursively."""
    for key in PATH_KEYS:
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if node is not None and not node.strip():
            raise ConfigError(f"{key}: empty; give a path, or null for none")


def _check_augment(cfg: Config) -> None:
    from distgan import data as data_mod
    from distgan.gan import augment

    names = augment.parse_policy(cfg.augment.policy)
    for name in names:
        augment.AUGMENTS.get(name, key="augment.policy")
    if names and len(data_mod.data_shape(cfg.data)) != 3:
        raise ConfigError(f"augment.policy: {cfg.augment.policy!r} transforms images, but the data set "
                          f"{cfg.data.name!r} holds points; leave augment.policy empty")


def _check_loss(cfg: Config) -> None:
    from distgan import models
    from distgan.gan import losses, regularizers

    if models.is_super_resolution(cfg.model):
        from distgan.gan import sr

        sr.check_config(cfg)
    elif cfg.loss.adversarial_weight <= 0:
        raise ConfigError(f"loss.adversarial_weight: a generative model learns only from D; it must be > 0 "
                          f"(0 is for the PSNR stage of super-resolution), got {cfg.loss.adversarial_weight}")

    loss = losses.LOSSES.get(cfg.loss.type, key="loss.type")
    reg = cfg.loss.d_reg
    if reg.type != "none":
        regularizers.REGULARIZERS.get(reg.type, key="loss.d_reg.type")
        positive("loss.d_reg.weight", reg.weight)
    positive("loss.d_reg.interval", reg.interval)
    if reg.type != "none" and cfg.deepspeed.stage("d") == 3:
        raise ConfigError(f"loss.d_reg.type: {reg.type} backpropagates through D's input gradient (a double "
                          f"backward), which DeepSpeed's ZeRO-3 does not support; set deepspeed.d.zero_stage "
                          f"to 0, 1 or 2 (G can stay at 3)")
    if loss.needs_lipschitz and reg.type != "gp" and not cfg.model.d_spectral_norm:
        raise ConfigError(f"loss.type: {cfg.loss.type} needs a Lipschitz discriminator, or its D loss grows "
                          f"without bound; set loss.d_reg.type=gp (WGAN-GP) or model.d_spectral_norm=true")
    if loss.needs_lipschitz and reg.type == "gp" and reg.interval > 1 and not cfg.model.d_spectral_norm:
        raise ConfigError(f"loss.d_reg.interval: {cfg.loss.type} relies on the gradient penalty at every D step; "
                          f"a lazy penalty every {reg.interval} steps leaves the critic unbounded in between "
                          f"(lazy intervals suit r1); set loss.d_reg.interval=1")
    if cfg.model.d_spectral_norm and cfg.model.d_norm == "batch":
        raise ConfigError("model.d_spectral_norm: BatchNorm after a spectrally normalized layer undoes its "
                          "Lipschitz bound; set model.d_norm=none")
