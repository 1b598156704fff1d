"""The whole check of a config: the one place that resolves its names through the registries.

``Config.from_dict`` checks keys, types and ranges (``distgan.config``); what
needs a registry (the model family and so the task, data sets, losses,
regularizers, metrics) and the files a config names are checked here. The
Python API and every launcher call ``validate`` on the driver before Ray
starts, and every worker again before it builds anything (files must exist on
every node). Each registry and each task checks its own section and names the
offending key.
"""

from __future__ import annotations

from distgan.config import Config, ConfigError, positive
from distgan.gan import losses, regularizers
from distgan.persist.export import check_init_from
from distgan.runtime import lr_schedule
from distgan.tasks import task_for


def validate(cfg: Config) -> Config:
    """Raise a ConfigError naming the key when ``cfg`` cannot run; returns ``cfg``."""
    # Types and ranges again: a Config changed in Python after loading has skipped the loader's checks.
    Config.from_dict(cfg.to_dict())
    task = task_for(cfg)
    if cfg.train.channels_last and cfg.model.family == "mlp":
        raise ConfigError("train.channels_last: the mlp family has no images or convolutions to lay out; "
                          "use it with dcgan, srresnet or rrdb")
    task.check_config(cfg)
    if cfg.train.init_from is not None:
        check_init_from(cfg)
    _check_loss(cfg)
    lr_schedule.check_config(cfg)
    return cfg


def _check_loss(cfg: Config) -> None:
    """The adversarial loss and D's regularizer, for every task."""
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
