"""The typed config: loading, overrides, errors that name the key, and every shipped config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from distgan.config import Config, ConfigError, parse_override
from distgan import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def test_there_are_configs():
    names = {p.name for p in CONFIGS}
    assert {"dcgan_digits.yaml", "vanilla_ring8.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_loads_and_round_trips(path, tmp_path, monkeypatch):
    # The SRGAN/ESRGAN configs need VGG19 weights; validation checks only that the file exists (its
    # contents are checked when the loss is built, tested in tests/gan/test_perceptual.py).
    # Likewise the Inception weights of the StyleGAN2 GPU configs, whose data.path names the folder a user
    # packs (data/ffhq256): here a folder of one image stands in for it.
    (tmp_path / "vgg19.pth").write_bytes(b"stand-in")
    monkeypatch.setenv("DISTGAN_VGG19_WEIGHTS", str(tmp_path / "vgg19.pth"))
    (tmp_path / "inception.pth").write_bytes(b"stand-in")
    monkeypatch.setenv("DISTGAN_INCEPTION_WEIGHTS", str(tmp_path / "inception.pth"))
    overrides = ()
    if "data/" in (yaml.safe_load(path.read_text()).get("data") or {}).get("path", ""):
        from PIL import Image

        (tmp_path / "images").mkdir()
        Image.new("RGB", (1024, 1024)).save(tmp_path / "images" / "a.png")
        overrides = (f"data.path={tmp_path / 'images'}",)
    cfg = load_config(path, overrides)
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_builtin_default_is_dcgan_digits():
    assert Config.from_dict({}) == load_config(next(p for p in CONFIGS if p.name == "dcgan_digits.yaml"))
    assert Config().model.family == "dcgan" and Config().data.name == "digits"


def test_dotted_overrides_are_typed(tmp_path):
    from PIL import Image

    Image.new("L", (20, 12)).save(tmp_path / "a.png")
    cfg = load_config(None, ("train.steps=200", "optim.g.lr=1e-4", "optim.d.betas=[0.0, 0.99]",
                             "deepspeed.zero_stage=2", "deepspeed.d.zero_stage=3", "scaling.use_gpu=false",
                             "data.path=" + str(tmp_path)))
    assert cfg.train.steps == 200
    assert cfg.optim.g.lr == pytest.approx(1e-4) and isinstance(cfg.optim.g.lr, float)
    assert cfg.optim.d.betas == (0.0, 0.99)
    assert cfg.deepspeed.stage("g") == 2 and cfg.deepspeed.stage("d") == 3
    assert cfg.scaling.use_gpu is False


def test_required_keys_exist():
    cfg = Config()
    for key in ("train.steps", "train.batch_size", "train.n_critic", "train.checkpoint_every", "train.sample_every",
                "train.seed", "scaling.num_workers", "scaling.use_gpu", "deepspeed.zero_stage",
                "deepspeed.precision", "model.family", "data.name", "data.path"):
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
    assert cfg.scaling.use_gpu == "auto"


def test_max_failures_takes_minus_one_for_no_limit():
    assert load_config(None, ("train.max_failures=-1",)).train.max_failures == -1


@pytest.mark.parametrize("override, needle", [
    ("train.stpes=5", "did you mean 'train.steps'"),
    ("trian.steps=5", "did you mean 'train'"),
    ("train.steps=abc", "train.steps: expected an integer, got 'abc'"),
    ("train.steps=1.5", "train.steps: expected an integer"),
    ("train.steps=0", "train.steps: must be > 0, got 0"),
    ("train.batch_size=-4", "train.batch_size: must be > 0"),
    ("train.max_failures=-2", "train.max_failures: must be >= 0, or -1 for no limit, got -2"),
    ("deepspeed.zero_stage=4", "deepspeed.zero_stage: must be 0, 1, 2 or 3, got 4"),
    ("deepspeed.precision=fp8", "deepspeed.precision: expected one of 'fp32', 'bf16', 'fp16', got 'fp8'"),
    ("optim.g.lr=fast", "optim.g.lr: expected a number, got 'fast'"),
    ("optim.g.betas=[0.5]", "optim.g.betas: expected a list of 2 values"),
    ("optim.d.betas=[0.5, 1.0]", "optim.d.betas[1]: must be in [0, 1)"),
    ("scaling.use_gpu=maybe", "scaling.use_gpu"),
    ("model.family=stylegan", "model.family: unknown model family 'stylegan'"),
    ("model.family=dcgam", "did you mean 'dcgan'"),
    ("loss.type=hinj", "loss.type: unknown adversarial loss 'hinj'"),
    ("data.name=mnist", "data.name: unknown data set 'mnist'"),
    ("data.path=/no/such/folder", "/no/such/folder"),
    ("train", "not of the form KEY=VALUE"),
    # A seed no worker could use (numpy's SeedSequence refuses negatives; torch's generator 2^64 and up).
    ("data.seed=-1", "data.seed: a seed must be in [0, 2^32 - 1], got -1"),
    ("train.seed=18446744073709551616", "train.seed: a seed must be in [0, 2^32 - 1]"),
    ("eval.seed=-3", "eval.seed: a seed must be in"),
    ("tune.seed=4294967296", "tune.seed: a seed must be in"),
])
def test_bad_values_name_the_key(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(None, (override,))
    assert needle in str(info.value)


def test_fp16_without_gpu_is_rejected():
    with pytest.raises(ConfigError, match="fp16 needs GPUs"):
        load_config(None, ("deepspeed.precision=fp16", "scaling.use_gpu=false"))


@pytest.mark.parametrize("name, text, needle", [
    ("nope.yaml", None, "nope.yaml' does not exist"),
    ("broken.yaml", "train: {steps: [1, 2\n", "broken.yaml' is not valid YAML"),
    ("list.yaml", "- 1\n- 2\n", "must hold a mapping"),
    ("section.yaml", "train: 5\n", "train: expected a mapping"),
    # PyYAML keeps the second of two equal keys silently: the first train block would vanish.
    ("twice.yaml", "train: {steps: 10}\nmodel: {g_width: 8}\ntrain:\n  batch_size: 8\n",
     r"twice.yaml': key 'train' is given twice in one mapping \(lines 1 and 3\)"),
    ("inner.yaml", "train:\n  steps: 10\n  steps: 20\n", r"key 'steps' is given twice .*lines 2 and 3"),
    ("inline.yaml", "train: {steps: 10, steps: 20}\n", r"key 'steps' is given twice .*lines 1 and 1"),
])
def test_bad_yaml_files(tmp_path, name, text, needle):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=true") == ("a.b", True)
    assert parse_override("a.b=null") == ("a.b", None)
    assert parse_override("a.b=x=y") == ("a.b", "x=y")


def test_launchers_send_workers_absolute_paths(tmp_path, monkeypatch):
    """Ray workers do not run in the driver's directory: relative paths are resolved before they leave it."""
    from PIL import Image

    from distgan.config import with_absolute_paths

    (tmp_path / "imgs").mkdir()
    Image.new("L", (20, 20)).save(tmp_path / "imgs" / "a.png")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ("data.path=imgs", "eval.cache_dir=~/cache"))
    resolved = with_absolute_paths(cfg)
    assert resolved.data.path == str(tmp_path / "imgs")
    assert resolved.eval.cache_dir == str(Path("~/cache").expanduser())
    assert resolved.eval.inception_weights is None and resolved.train == cfg.train
    assert with_absolute_paths(resolved) is resolved


def test_a_merge_key_gives_defaults_the_mapping_overrides(tmp_path):
    """``<<: *anchor`` is no key given twice: the mapping's own keys override what the merge brings."""
    path = tmp_path / "merge.yaml"
    path.write_text("optim:\n  g: &adam {lr: 0.001, betas: [0.0, 0.99]}\n  d:\n    <<: *adam\n    lr: 0.004\n")
    optim = load_config(path).optim
    assert (optim.g.lr, optim.d.lr, tuple(optim.d.betas)) == (0.001, 0.004, (0.0, 0.99))


def test_a_mapping_for_a_section_merges_into_it(tmp_path):
    """``model.stylegan2={mapping_layers: 3}`` keeps the file's other keys of the section, as the dotted
    override of the one key would; nested sections merge too, and a mapping-valued key is replaced whole."""
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  family: stylegan2\n  stylegan2: {w_dim: 64, channel_base: 512}\n"
                    "optim:\n  g: {lr: 0.002, betas: [0.0, 0.99], schedule: {type: multistep, milestones: [10]}}\n"
                    "loss:\n  perceptual: {layers: {conv1_2: 0.1, conv5_4: 1.0}}\n")
    merged = load_config(path, ("model.stylegan2={mapping_layers: 3}", "optim.g={lr: 0.001, schedule: {gamma: 0.3}}",
                                "loss.perceptual={layers: {conv5_4: 2.0}}"))
    assert merged.model.stylegan2 == load_config(path, ("model.stylegan2.mapping_layers=3",)).model.stylegan2
    assert (merged.model.stylegan2.w_dim, merged.model.stylegan2.mapping_layers) == (64, 3)
    g = merged.optim.g
    assert (g.lr, tuple(g.betas), g.schedule.type, list(g.schedule.milestones), g.schedule.gamma) == \
        (0.001, (0.0, 0.99), "multistep", [10], 0.3)
    assert merged.loss.perceptual.layers == {"conv5_4": 2.0}  # a mapping of names, not a section: replaced


def test_a_space_key_is_one_name_past_tune_space():
    cfg = load_config(None, ("tune.space.optim.g.lr={loguniform: [1.0e-4, 1.0e-3]}", "tune.space.model.g_width={choice: [8, 16]}"))
    assert cfg.tune.space == {"optim.g.lr": {"loguniform": [1.0e-4, 1.0e-3]}, "model.g_width": {"choice": [8, 16]}}


def test_an_override_with_a_key_given_twice_is_refused():
    with pytest.raises(ConfigError, match=r"override 'train=\{steps: 5, steps: 6\}': key 'steps' is given twice"):
        load_config(None, ("train={steps: 5, steps: 6}",))
