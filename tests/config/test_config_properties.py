"""Property-based tests of config loading (hypothesis): whatever values the overrides carry, ``load_config``
either returns a Config that survives the trip through a dict and through YAML (as ``config.yaml`` and the
Ray boundary carry it), or raises a ConfigError that names one of the keys that were set. Never another
exception: a TypeError or ZeroDivisionError traceback is a bug in validation.

The strategies are derived from the dataclass tree in ``distgan/config/schema.py``, so a new key is covered as
soon as it exists: values of its type (ints with 0 and negatives, floats with nan, inf and negatives,
choices and near misses), values of other types (strings, lists, bools, mappings, null), misspelt and
unknown keys, and raw override text read as YAML.
"""

from __future__ import annotations

import dataclasses
import math
import string
import types
import typing
from typing import Any, Literal, Union

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distgan.config import PATH_KEYS, Config, ConfigError
from distgan import load_config
from distgan.sweeps.checks import check_sweep

# Deterministic for CI (derandomize: the examples depend on the test alone), no example database written
# into the checkout, and no per-example deadline (the first examples import registries and load digits).
FAST = settings(max_examples=600, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def leaves(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every leaf key of the config tree -> its type."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(leaves(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = hints[f.name]
    return out


LEAVES = leaves()
SECTIONS = sorted({key.rsplit(".", 1)[0] for key in LEAVES if "." in key})
KNOWN_NAMES = set(LEAVES) | set(SECTIONS)
MISSING = "/nonexistent/distgan-property-test"
"""Path-valued keys get this (never real folders: an arbitrary string could name '/', scanned recursively)."""

short_text = st.text(alphabet=string.ascii_letters + string.digits + " ._-,:/", max_size=12)
wrong_type = st.one_of(
    short_text, st.booleans(), st.none(),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "type", "x"]), st.integers(-2, 2), max_size=2),
)
ints = st.one_of(st.integers(-3, 3), st.sampled_from([2, 4, 8, 16, 64, 1000]), st.integers(-(2 ** 63), 2 ** 63))
# The edge cases named, so that a few hundred examples surely hold each of them (st.floats alone rarely
# draws nan once it is nested in one_of).
floats = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 0.5, 1.0, 1e-4, 1e308, 5e-324]),
                   st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3))
json_like = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(), short_text),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(short_text, inner, max_size=3),
                         max_leaves=6)


def of_type(tp: Any, default: Any) -> st.SearchStrategy:
    """Values meant for a field of type ``tp`` (right and wrong ones)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return st.one_of(*(st.none() if a is type(None) else of_type(a, default) for a in typing.get_args(tp)))
    if origin is Literal:
        choices = typing.get_args(tp)
        return st.one_of(st.sampled_from(choices), st.sampled_from([str(c).upper() + "x" for c in choices]))
    if origin is tuple:
        items = [of_type(a, None) for a in typing.get_args(tp)]
        return st.one_of(st.tuples(*items).map(list), st.lists(items[0], max_size=4))
    if origin is list:  # any length, including empty and out of order (milestones, periods)
        return st.lists(of_type(typing.get_args(tp)[0], None), max_size=4)
    if origin is dict:
        return st.one_of(st.just({}), st.dictionaries(short_text, json_like, max_size=3))
    if tp is bool:
        return st.booleans()
    if tp is int:
        return ints
    if tp is float:
        return floats
    if tp is str:
        return st.one_of(st.just(default), short_text) if isinstance(default, str) else short_text
    raise AssertionError(f"no strategy for {tp!r}")


def _value(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


DEFAULTS = {key: _value(Config(), key) for key in LEAVES}


def value_for(key: str) -> st.SearchStrategy:
    if key in PATH_KEYS:
        return st.one_of(st.none(), st.just(MISSING), st.just(""), st.integers(-1, 1), st.lists(st.integers()))
    return st.one_of(of_type(LEAVES[key], DEFAULTS[key]), wrong_type)


def yaml_text(value: Any) -> str:
    """How a user would write ``value`` after ``KEY=`` (YAML flow style, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


@st.composite
def misspelt(draw) -> str:
    """A real key with one component misspelt, an unknown component added, or an unknown section."""
    key = draw(st.sampled_from(sorted(LEAVES)))
    parts = key.split(".")
    how = draw(st.sampled_from(["typo", "extra", "section"]))
    if how == "extra":
        return key + "." + draw(st.sampled_from(["x", "value", "min"]))
    if how == "section":
        return draw(st.sampled_from(["trian", "models", "optimizer", "zz"])) + "." + parts[-1]
    i = draw(st.integers(0, len(parts) - 1))
    word = parts[i]
    j = draw(st.integers(0, len(word) - 1))
    parts[i] = word[:j] + word[j + 1:] + draw(st.sampled_from(["", "s", "x"]))  # drop a letter, maybe add one
    return ".".join(p for p in parts if p) or "x"


@st.composite
def override(draw) -> tuple[str, str]:
    """(key, 'KEY=VALUE') for a known key with a drawn value, an unknown key, or raw YAML text."""
    kind = draw(st.sampled_from(["value"] * 6 + ["unknown", "raw", "section"]))
    if kind == "unknown":
        key = draw(misspelt())
        return key, f"{key}={yaml_text(draw(st.integers(0, 9)))}"
    if kind == "section":  # a whole section given a scalar, or a mapping of one known and one stray key
        key = draw(st.sampled_from(SECTIONS))
        value = draw(st.one_of(st.integers(), short_text, st.just({"stray_key": 1})))
        return key, f"{key}={yaml_text(value)}"
    key = draw(st.sampled_from(sorted(k for k in LEAVES if k not in PATH_KEYS)) if kind == "raw"
               else st.sampled_from(sorted(LEAVES)))
    if kind == "raw":
        return key, f"{key}={draw(st.text(alphabet=string.printable, max_size=10))}"
    return key, f"{key}={yaml_text(draw(value_for(key)))}"


def named(key: str) -> str:
    """The part of an override's key an error must name: up to the first unknown component, or up to the
    leaf it reaches (a deeper ``a.leaf.x`` is an error about ``a.leaf``)."""
    node: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            return ".".join(parts[: i + 1])
        tp = typing.get_type_hints(node)[part]
        if not dataclasses.is_dataclass(tp):
            return ".".join(parts[: i + 1])
        node = tp
    return key


def floats_in(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in floats_in(item)]
    return []


def check_property(overrides: list[tuple[str, str]]) -> None:
    items = tuple(text for _, text in overrides)
    try:
        cfg = load_config(None, items)
        if cfg.tune.space:  # what distgan tune checks on top
            check_sweep(cfg)
    except ConfigError as exc:
        message = str(exc)
        names = {named(key) for key, _ in overrides}
        # A conflict between a set key and a default may be reported at the default's key ("tune.metric: fid
        # needs 'fid' in eval.metrics"): a config key still heads the message.
        assert any(name in message for name in names) or message.split(":")[0] in KNOWN_NAMES, (
            f"{message!r} names none of {sorted(names)}")
        return
    # Every accepted number is finite: nan passes any range check (nan < 0 is false), and equality cannot
    # catch it below (PyYAML and float() hand back the very same nan object, and ``is`` precedes ``==``).
    for key, tp in LEAVES.items():
        if typing.get_origin(tp) is not dict:
            assert all(math.isfinite(v) for v in floats_in(_value(cfg, key))), f"{key} = {_value(cfg, key)!r}"
    # The Ray boundary (a plain dict) and config.yaml (YAML text) both give back the same config.
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict(), sort_keys=False))) == cfg


@FAST
@given(st.lists(override(), min_size=1, max_size=4))
def test_any_overrides_load_or_name_a_key(overrides):
    check_property(overrides)


BASES = {
    "dcgan": (),
    "mlp": ("model.family=mlp", "data.name=ring8"),
    "conditional": ("model.conditional=true",),
    "srresnet": ("model.family=srresnet", "data.name=photos", "data.channels=3", "data.resolution=64",
                 "loss.adversarial_weight=0"),
    "esrgan": ("model.family=rrdb", "data.name=photos", "data.channels=3", "data.resolution=64", "loss.type=ragan",
               "model.discriminator=unet"),
    "sweep": ("tune.space={optim.g.lr: {loguniform: [1.0e-4, 1.0e-3]}, model.g_width: {choice: [16, 32]}}",
              "eval.every=100", "train.checkpoint_every=100"),
    "pbt": ("tune.space={optim.d.lr: {uniform: [1.0e-4, 1.0e-3]}}", "tune.scheduler.type=pbt", "eval.every=100",
            "train.checkpoint_every=100"),
}
"""Valid starting points of each kind of run, so that drawn values also reach the checks of the super-resolution
families and of sweeps (which run only when those are configured)."""


@FAST
@given(st.sampled_from(sorted(BASES)), st.lists(override(), min_size=1, max_size=3))
def test_changes_to_each_kind_of_run_load_or_name_a_key(base, overrides):
    check_property([(text.split("=", 1)[0], text) for text in BASES[base]] + overrides)


@FAST
@given(st.sampled_from(sorted(k for k, tp in LEAVES.items() if tp in (int, float))),
       st.one_of(floats, ints, wrong_type))
def test_one_numeric_key_at_a_time(key, value):
    """Each numeric key alone, so a bad value is not masked by an earlier error in the same config."""
    check_property([(key, f"{key}={yaml_text(value)}")])


@pytest.mark.parametrize("text", ["nan", ".nan", "inf", "-.inf", "1e400"])
@pytest.mark.parametrize("key", sorted(k for k, tp in LEAVES.items() if tp in (float, typing.Optional[float])))
def test_non_finite_numbers_are_refused(key, text):
    """Found by the properties above: nan passed every range check (nan < 0 is false) and a config holding
    it is not equal to itself; inf passed as a learning rate or loss weight."""
    with pytest.raises(ConfigError, match=rf"{key}: .*finite"):
        load_config(None, (f"{key}={text}",))


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize("text", ["''", "'  '"])
def test_empty_paths_are_refused(key, text):
    """Found by the properties above: data.path '' is the current directory, scanned recursively for images."""
    with pytest.raises(ConfigError, match=rf"{key}: .*empty"):
        load_config(None, (f"{key}={text}",))


def test_a_huge_blur_sigma_is_refused_not_overflowed():
    """Found by the properties above: ceil(3 * 1e308) overflowed in the blur-kernel check."""
    with pytest.raises(ConfigError, match=r"data.degradation.blur_sigma: sigma 1e\+308 needs a blur kernel wider"):
        load_config(None, ("model.family=srresnet", "data.name=photos", "data.channels=3", "data.resolution=64",
                           "loss.adversarial_weight=0", "data.degradation.blur_sigma=[0, 1.0e+308]"))


def test_a_sweep_range_end_beyond_the_largest_float_is_refused():
    """Found by the properties above: float() of a 400-digit integer overflowed in the search-space parser."""
    with pytest.raises(ConfigError, match=r"tune.space.optim.g.lr.loguniform: expected a number below 1.8e308, "
                                          r"got an integer of 400 digits"):
        check_sweep(load_config(None, ("tune.space={optim.g.lr: {loguniform: [1, " + "9" * 400 + "]}}",
                                       "eval.every=100", "train.checkpoint_every=100")))
