"""``distgan import-weights``: a released ESRGAN / Real-ESRGAN / BasicSR generator as a distgan generator.

The file is read as tensors only (``distgan.core.pretrained.read_state_dict``:
``weights_only=True`` for a ``.pth``, or safetensors), its key layout unwrapped
(BasicSR saves ``{"params": ...}`` and, with EMA, ``{"params_ema": ...}``; the
EMA weights are what BasicSR and Real-ESRGAN test with, so they win when both are
there), its names mapped by ``distgan.models.published`` onto the family's
module, every tensor's shape checked against that module (errors name the key
as the file spells it, both shapes and the file), and the result written as the
same ``generator.safetensors`` + ``generator.json`` that training exports: a
directory ``distgan upscale``, ``distgan evaluate`` and ``train.init_from`` take.

The description records where the weights came from (file, sha256, layout, the
dict used) and, since no data trained it here, names the built-in photos as the
data ``distgan evaluate DIR`` (without ``--hr-folder``) validates on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional, Union

import torch

from distgan import models
from distgan.config import ConfigError, DataConfig, ModelConfig
from distgan.core.pretrained import check_state_dict, read_state_dict, sha256
from distgan.models import published
from distgan.persist.export import META, WEIGHTS, save_generator

PathLike = Union[str, Path]
NESTED = ("params_ema", "params")
"""BasicSR's wrappers, in the order preferred: the EMA weights are the ones its releases are tested with."""
EVAL_RESOLUTION = 128
"""The crop side recorded as the generator's data shape (and the photos it validates on): what the shipped SR
configs train with; the family is fully convolutional, so it only matters for those checks."""


@dataclass(frozen=True)
class Imported:
    directory: Path
    layout: str
    used: str
    """Which dict of the file became the generator: ``params_ema``, ``params`` or ``(bare)``."""
    notes: tuple[str, ...]
    meta: dict


def unwrap(state: Mapping, path: str) -> tuple[dict, str, list[str]]:
    """``(flat state dict, which part was used, notes)`` from a bare or BasicSR-wrapped state dict."""
    notes: list[str] = []
    state = dict(state)
    # A safetensors file cannot nest: BasicSR's wrappers then show as key prefixes.
    prefixes = {k.split(".", 1)[0] for k in state if isinstance(k, str) and "." in k}
    if prefixes and prefixes <= set(NESTED) and all("." in k for k in state):
        state = {p: {k[len(p) + 1:]: v for k, v in state.items() if k.startswith(p + ".")} for p in prefixes}
    present = [key for key in NESTED if isinstance(state.get(key), Mapping)]
    if present:
        used = present[0]
        if len(present) > 1:
            notes.append(f"{path} holds both params_ema and params; using params_ema (the EMA weights, which "
                         f"BasicSR and Real-ESRGAN evaluate and release)")
        others = sorted(str(k) for k in state if k not in NESTED)
        if others:
            notes.append(f"ignored top-level entries beside {used}: {', '.join(others)}")
        state = dict(state[used])
    else:
        used = "(bare)"
        nested = sorted(str(k) for k, v in state.items() if isinstance(v, Mapping))
        if nested:
            raise ConfigError(f"{path}: unknown key layout: top-level {', '.join(repr(k) for k in nested)} "
                              f"hold{'s' if len(nested) == 1 else ''} dicts; distgan reads a bare state dict, or "
                              f"BasicSR's {{'params_ema': ...}} / {{'params': ...}}")
    # nn.DataParallel's prefix, which some community releases keep.
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
        notes.append("stripped the 'module.' prefix (a DataParallel save)")
    return state, used, notes


def convert(state: Mapping, family: str, path: str, scale: Optional[int] = None):
    """``(distgan generator, its ModelConfig, layout)`` from a flat published state dict."""
    layout = published.detect(state, path)
    if layout.family != family:
        raise ConfigError(f"{path} holds a {layout.title} ({layout.family} family), not a {family} generator; "
                          f"use --family {layout.family}")
    if layout.published_name is None:
        raise ConfigError(f"{path} holds a {layout.title}, which distgan cannot import: {layout.refusal}")
    arch = published.infer(state, layout, path)
    published.check_runnable(arch, state, layout, path, scale)
    model_cfg = ModelConfig(family=family, g_width=arch.width, blocks=arch.blocks, growth=arch.growth,
                            scale=arch.scale)
    module = models.build_generator(model_cfg, (arch.channels, EVAL_RESOLUTION, EVAL_RESOLUTION))
    expected = module.state_dict()
    names = published.distgan_names(expected, layout, arch)
    what = (f"the {layout.title} it looks like (x{arch.scale}, {arch.width} features, {arch.blocks} blocks, "
            f"growth {arch.growth}, as inferred from its first tensors)")
    try:
        checked = check_state_dict(state, {p: expected[d] for p, d in names.items()}, path, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    mapped = {names[p]: v.to(torch.float32) for p, v in checked.items()}
    module.load_state_dict(published.fold_value_range(mapped))
    return module.eval(), model_cfg, layout


def import_weights(file: PathLike, family: str, out: PathLike, scale: Optional[int] = None) -> Imported:
    """Convert ``file`` and write it to the new generator directory ``out``; errors are ConfigErrors naming
    the file (and the key)."""
    path = str(Path(file).expanduser())
    out = Path(out).expanduser()
    if family not in ("rrdb", "srresnet"):
        raise ConfigError(f"--family {family!r}: published weights are imported for rrdb or srresnet")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; give a directory for the generator (new, or one "
                          f"without a {WEIGHTS})")
    if (out / WEIGHTS).exists() or (out / META).exists():
        raise ConfigError(f"--out {str(out)!r} already holds a generator; choose a new directory or remove it")
    try:
        raw = read_state_dict(path)
    except ValueError as exc:  # not tensors only, not a torch or safetensors file
        raise ConfigError(str(exc)) from None
    state, used, notes = unwrap(raw, path)
    module, model_cfg, layout = convert(state, family, path, scale)
    channels = module.in_channels
    meta = {
        "task": models.family(model_cfg).task, "model": asdict(model_cfg),
        "data_shape": [channels, EVAL_RESOLUTION, EVAL_RESOLUTION], "num_classes": 0, "class_names": [],
        "scale": model_cfg.scale, "ema": used == "params_ema", "step": 0, "images_seen": 0,
        "first_conv_pad": published.BLACK,
        "data": "photos", "data_config": asdict(DataConfig(name="photos", channels=channels,
                                                            resolution=EVAL_RESOLUTION)),
        "imported_from": {"file": str(Path(path).resolve()), "sha256": sha256(path), "layout": layout.name,
                          "used": used, "value_range": "published [0, 1] folded into conv_first/conv_last"},
    }
    save_generator(out, module, meta)
    return Imported(out, layout.name, used, tuple(notes), meta)
