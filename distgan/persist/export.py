"""The exported generator: ``generator.safetensors`` + ``generator.json``.

The JSON holds everything needed to rebuild the module (model config, data
shape); the weights are fp32 safetensors, so loading never unpickles. A pickle
(a ``.pt``/``.pth`` file, or one renamed to ``generator.safetensors``) is
refused with a message that says so: unpickling can run code the file names.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional, Union

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from distgan import models
from distgan.config import ConfigError, ModelConfig, build_section
from distgan.core.filesystem import local_path
from distgan.models.published import pad_first_conv
from distgan.persist import layout
from distgan.persist.storage import Storage, is_uri, local_dir, staging_dir

FORMAT = "distgan-generator"
WEIGHTS = "generator.safetensors"
META = "generator.json"


class GeneratorFileError(ValueError):
    """A generator file that is not what it must be: not safetensors, or not the weights its description
    describes. The message names the file."""


def save_generator(directory: Union[str, Path], module: nn.Module, metadata: dict) -> Path:
    """Write weights and metadata atomically into ``directory``; returns the weights path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
               for k, v in module.state_dict().items()}
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, directory / WEIGHTS)
    meta_tmp = directory / (META + ".tmp")
    meta_tmp.write_text(json.dumps({"format": FORMAT, "version": 1, **metadata}, indent=2, sort_keys=True))
    os.replace(meta_tmp, directory / META)
    return directory / WEIGHTS


def find_generator(path: Union[str, Path]) -> Path:
    """Resolve a run directory, checkpoint directory or weights file to a weights file.

    A run directory gives its final export, or its newest checkpoint while that is newer (a run that trains,
    or a finished run resumed to more steps); a sweep's trial stopped early by its scheduler has only the
    checkpoints under ``attempts/``.
    """
    if "://" in str(path):
        if is_uri(path):
            return download_generator(str(path))
    path = local_path(path) if str(path).startswith("file://") else Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise FileNotFoundError(f"{path} is not a .safetensors generator file (distgan exports generators "
                                    f"as {WEIGHTS} + {META}; it never unpickles a .pt or .pth file, since "
                                    f"unpickling can run code the file names)")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    saved = [p.relative_to(path).as_posix() for pattern in ("checkpoint_*", f"{layout.ATTEMPTS}/attempt_*/checkpoint_*")
             for p in path.glob(pattern) if (p / WEIGHTS).is_file()]
    exported = path / WEIGHTS
    newest = _newer_than_export(layout.newest_checkpoint(saved), exported.with_name(META) if exported.is_file()
                                else None, lambda meta: meta.read_text())
    if newest is not None:
        return path / newest / WEIGHTS
    if exported.is_file():
        return exported
    raise FileNotFoundError(f"{path} holds no {WEIGHTS} and no checkpoint with one; has the run saved yet?")


def _newer_than_export(newest: Optional[str], export_meta, read: Callable) -> Optional[str]:
    """``newest`` (a checkpoint's name) unless the run's export (described by ``export_meta``, None if there is
    none) is of its step or later. An export whose step cannot be read wins: its reader names the problem."""
    if newest is None or export_meta is None:
        return newest
    try:
        exported_step = json.loads(read(export_meta)).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(exported_step, int):
        return None
    return newest if layout.checkpoint_step(newest) > exported_step else None


def download_generator(uri: str) -> Path:
    """``find_generator`` for a URI (a run, a checkpoint or a weights file in a bucket): the weights, their
    description and the run's config are downloaded into this machine's staging directory
    (``DISTGAN_STAGING_DIR``), and the local weights file returned. A bad URI is a ConfigError naming it."""
    store = Storage.parse(uri, "generator URI")
    where = store.as_dir()
    try:
        if where.name.endswith(".safetensors") and where.parent().is_file(where.name):
            source, weights = where.parent(), where.name
        else:
            newest = _newer_than_export(layout.newest_checkpoint(_saved_in_store(where)),
                                        META if where.is_file(WEIGHTS) else None, where.read_text)
            if newest is not None:
                source, weights = where.child(newest), WEIGHTS
            elif where.is_file(WEIGHTS):
                source, weights = where, WEIGHTS
            else:
                raise FileNotFoundError(f"{where.display()} holds no {WEIGHTS} and no checkpoint with one; has "
                                        f"the run saved yet?")
        if not weights.endswith(".safetensors"):
            raise FileNotFoundError(f"{source.display(weights)} is not a .safetensors generator file")
        local = staging_dir(store, "generator")
        # The run's config.yaml too (beside a run's export, or in the run holding a checkpoint), which
        # ``distgan evaluate`` reads. A file missing remotely goes locally: never one left from an earlier
        # download; a missing description is then named by its reader, as for a local file.
        config = next((d for d in (source, source.parent()) if d.is_file("config.yaml")), None)
        for holder, remote, name in ((source, weights, WEIGHTS), (source, META, META), (config, "config.yaml",
                                                                                        "config.yaml")):
            (local / name).unlink(missing_ok=True)
            if holder is not None and holder.is_file(remote):
                local_dir(local).write_bytes(name, holder.read_bytes(remote))  # atomic, per process
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FileNotFoundError(f"{where.display()} cannot be read: {exc}") from None
    return local / WEIGHTS


def _saved_in_store(where) -> list[str]:
    """The checkpoints holding weights under a run in a store: its own, and a sweep trial's attempts'."""
    names = [d for d in where.subdirs() if layout.checkpoint_step(d) is not None]
    if layout.ATTEMPTS in where.subdirs():
        attempts = where.child(layout.ATTEMPTS)
        names += [f"{layout.ATTEMPTS}/{a}/{c}" for a in attempts.subdirs() for c in attempts.child(a).subdirs()
                  if layout.checkpoint_step(c) is not None]
    return [n for n in names if where.is_file(f"{n}/{WEIGHTS}")]


def _not_safetensors(weights: Path, error: Exception) -> str:
    with open(weights, "rb") as f:
        head = f.read(4)
    # torch.save's zip archive, or a bare pickle of protocol 2+ (which opens with the PROTO opcode)
    pickled = head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03",
                                                                                      b"\x04", b"\x05"))
    what = ("it holds a pickle (a torch .pt/.pth file?), which distgan never unpickles: unpickling can run "
            "code the file names" if pickled else f"corrupt or truncated: {error}")
    return (f"{weights} is not a safetensors file ({what}); a generator is {WEIGHTS} + {META} as distgan "
            f"exports them")


def check_weights(weights: Union[str, Path]) -> None:
    """Raise ValueError unless ``weights`` is a readable safetensors file (its header; no tensor is read)."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as exc:
        raise GeneratorFileError(_not_safetensors(Path(weights), exc)) from None


def read_weights(weights: Union[str, Path]) -> dict[str, torch.Tensor]:
    """The tensors of a generator file, read as safetensors and nothing else (GeneratorFileError otherwise)."""
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise GeneratorFileError(_not_safetensors(Path(weights), exc)) from None


def read_description(weights: Path) -> tuple[Path, dict]:
    """``generator.json`` beside ``weights``: (its path, its content), with what a rebuild needs in it.
    FileNotFoundError when it is missing; GeneratorFileError, naming it, when it cannot be what it must be
    (cut short, another file's JSON, keys missing)."""
    meta_path = weights.with_name(META)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing; it describes how to rebuild {weights}")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GeneratorFileError(f"{meta_path} cannot be read as JSON ({exc}); it describes how to rebuild "
                                 f"{weights}, as distgan exported it") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GeneratorFileError(f"{meta_path} is not a distgan generator description (no \"format\": "
                                 f"\"{FORMAT}\")")
    missing = [key for key, kind in (("model", dict), ("data_shape", list)) if not isinstance(meta.get(key), kind)]
    if missing:
        raise GeneratorFileError(f"{meta_path} lacks {' and '.join(repr(k) for k in missing)}, which a rebuild "
                                 f"of {weights} needs")
    return meta_path, meta


def load_generator(path: Union[str, Path]) -> tuple[nn.Module, dict]:
    """Rebuild the generator from a run dir, checkpoint dir or ``generator.safetensors``.

    Returns ``(module in eval mode on CPU, metadata)``.
    """
    weights = find_generator(path)
    meta_path, meta = read_description(weights)
    model_cfg = build_section(ModelConfig, meta["model"], "model.")
    module = models.build_generator(model_cfg, tuple(meta["data_shape"]), meta.get("num_classes", 0))
    tensors = read_weights(weights)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(tensors) if tensors[k].shape != expected[k].shape)
    if missing or unexpected or reshaped:
        # Weights copied beside another generator's description: say which file, not load_state_dict's dump.
        found = [f"{len(v)} {what} (first {v[0]!r})" for what, v in
                 (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if v]
        raise GeneratorFileError(f"{weights} does not hold the weights {meta_path.name} describes (a "
                                 f"{model_cfg.family!r} generator): tensors {', '.join(found)}; keep each "
                                 f"{WEIGHTS} beside the {META} it was exported with")
    module.load_state_dict(tensors)
    if meta.get("first_conv_pad") is not None:  # imported published weights: pad as they were trained
        pad_first_conv(module, meta["first_conv_pad"])
    return module.eval(), meta


@torch.no_grad()
def generate(module: nn.Module, n: int, seed: int, batch: int = 256,
             labels: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``n`` samples from latents drawn with ``seed``, in the model's output range.

    A conditional generator needs ``labels`` (n class indices); an unconditional one takes none.
    """
    num_classes = getattr(module, "num_classes", 0)
    if num_classes and labels is None:
        raise ValueError(f"this generator is conditional on {num_classes} classes; pass labels")
    if not num_classes and labels is not None:
        raise ValueError("this generator is unconditional; it takes no labels")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, module.latent_dim, generator=gen)
    if labels is None:
        return torch.cat([module(chunk) for chunk in z.split(batch)])
    return torch.cat([module(zc, yc) for zc, yc in zip(z.split(batch), labels.split(batch))])


# Keys of ``model`` that shape G's parameters: an exported G fits this run only if they agree.
_G_ARCHITECTURE = ("family", "latent_dim", "g_width", "g_depth", "g_norm", "conditional", "embed_dim", "scale",
                   "blocks", "growth")
# The same within a family's own section of ``model`` (keys that only shape D, or training, are not here).
_G_SECTION_ARCHITECTURE = {"stylegan2": ("w_dim", "mapping_layers", "channel_base", "channel_max")}


def check_init_from(cfg) -> None:
    """``train.init_from`` exists, describes a generator, and has this config's G architecture.

    Read from the JSON description and the weights' safetensors header (no tensor), so a wrong file fails
    before Ray starts.
    """
    try:
        weights = find_generator(cfg.train.init_from)
    except FileNotFoundError as exc:
        raise ConfigError(f"train.init_from: {exc}") from None
    try:
        _, meta = read_description(weights)
        check_weights(weights)
    except (FileNotFoundError, GeneratorFileError) as exc:
        raise ConfigError(f"train.init_from: {exc}") from None
    ours = asdict(cfg.model)
    theirs = {**ours, **meta["model"]}
    if theirs["family"] != ours["family"]:
        raise ConfigError(f"train.init_from: {weights} is a {theirs['family']!r} generator, but model.family is "
                          f"{ours['family']!r}")
    if "scale" in meta and theirs["scale"] != ours["scale"]:  # a super-resolution generator
        raise ConfigError(f"train.init_from: {weights} upscales x{theirs['scale']}, but model.scale is "
                          f"{ours['scale']}; train at x{theirs['scale']} or start from a x{ours['scale']} generator")
    differ = [f"model.{k} {ours[k]!r} (the file has {theirs[k]!r})" for k in _G_ARCHITECTURE if theirs[k] != ours[k]]
    for section, keys in _G_SECTION_ARCHITECTURE.items():
        if ours["family"] == section:
            mine, file = ours[section], {**ours[section], **(meta["model"].get(section) or {})}
            differ += [f"model.{section}.{k} {mine[k]!r} (the file has {file[k]!r})" for k in keys if file[k] != mine[k]]
    if differ:
        raise ConfigError(f"train.init_from: {weights} has another generator architecture: {', '.join(differ)}")
