"""Super-resolution configs that cannot work are refused at load time, naming the key."""

from __future__ import annotations

import re

import pytest

from distgan.config import ConfigError
from distgan import load_config

SR = ("model.family=srresnet", "model.scale=4", "model.g_norm=none", "data.name=photos", "data.channels=3",
      "data.resolution=96")


def test_the_sr_defaults_load():
    cfg = load_config(None, SR)
    assert cfg.eval.metrics == "auto" and cfg.loss.adversarial_weight == 1.0


@pytest.mark.parametrize("overrides, message", [
    (("train.n_critic=2",), "train.n_critic: super-resolution trains D once per G step"),
    (("deepspeed.d.gradient_accumulation_steps=2",), "deepspeed.d.gradient_accumulation_steps: D trains on G's"),
    (("augment.policy=color",), "augment.policy: 'color' is for generation"),
    (("augment.ada.enabled=true",), "augment.ada.enabled: adaptive augmentation of D's inputs is for generation"),
    (("loss.g_reg.type=path_length",), "loss.g_reg.type: path_length regularizes a generator's style space"),
    (("loss.adversarial_weight=0", "loss.pixel.weight=0"), "loss: every term of G's loss has weight 0"),
    (("loss.adversarial_weight=-1",), "loss.adversarial_weight: must be >= 0"),
    (("loss.perceptual.weight=1", "loss.perceptual.vgg_weights=/nowhere/vgg19.pth"),
     "loss.perceptual.vgg_weights: VGG19 weights not found at '/nowhere/vgg19.pth'"),
    (("loss.perceptual.layers={relu5_4: 1.0}",), "did you mean 'conv5_4'?"),
    (("eval.metrics=fid",), "eval.metrics: 'fid' is not a super-resolution metric"),
    (("data.val_crop=16",), "data.val_crop, eval.crop_border: 16 px leaves 8 px after eval.crop_border=4"),
    (("eval.crop_border=200",), "data.val_crop, eval.crop_border: 256 px leaves -144 px after eval.crop_border=200"),
    (("data.resolution=90",), "data.resolution: the high-resolution crop must be a multiple of model.scale=4"),
    (("model.scale=3",), "model.scale: srresnet upscales by 2, 4 or 8, got 3"),
    (("model.conditional=true",), "model.conditional: srresnet is a super-resolution model"),
    (("data.name=digits", "data.channels=1", "data.resolution=16"), "data.resolution: the low-resolution crop"),
])
def test_impossible_super_resolution_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, SR + overrides)


def test_generation_needs_its_adversarial_loss():
    with pytest.raises(ConfigError, match="loss.adversarial_weight: a generative model learns only from D"):
        load_config(None, ("loss.adversarial_weight=0",))


def test_path_length_needs_a_style_based_generator():
    with pytest.raises(ConfigError, match="loss.g_reg.type: path_length .* model.family='dcgan' does not have"):
        load_config(None, ("model.family=dcgan", "loss.g_reg.type=path_length"))


def test_photos_is_refused_for_generation():
    from distgan import data

    cfg = load_config(None, ("data.name=photos", "data.channels=3", "data.resolution=32", "eval.every=0"))
    with pytest.raises(ConfigError, match="data.name: photos is a super-resolution data set"):
        data.load_dataset(cfg.data)
