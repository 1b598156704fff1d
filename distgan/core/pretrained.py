"""Local pretrained-weights files: finding them, reading them safely, checking their layout.

Some networks here are used with published weights rather than trained ones:
FID's Inception-v3 (``distgan.metrics.inception``) and the VGG19 of the
perceptual loss (``distgan.gan.perceptual``). Training machines may have no
internet, so those weights are never downloaded: the user names a local file
(a config key, else an environment variable), and every reader goes through
the same three steps kept here, so each network gives the same kind of error
for the same kind of mistake:

* :func:`resolve_weights`: the config value, else the environment variable; a
  missing file raises FileNotFoundError with a message that says where to get it.
* :func:`read_state_dict`: a ``.pth`` is read with ``weights_only=True`` (a pickle
  can name any callable, and a full unpickle would run it), ``.safetensors`` as is.
* :func:`check_state_dict`: missing, unexpected and wrongly shaped keys are named
  together, with the file, before ``load_state_dict`` gives a less readable error.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from typing import Callable, Optional, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

PathLike = Union[str, os.PathLike]


def resolve_weights(path: Optional[PathLike], env_var: str, missing_message: Callable[[Optional[str]], str]) -> str:
    """``path``, else ``$env_var``, as an existing file (``~`` expanded).

    Raises FileNotFoundError with ``missing_message(the path tried, or None)``.
    """
    path = os.fspath(path) if path is not None else os.environ.get(env_var) or None
    if path is None or not os.path.isfile(os.path.expanduser(path)):
        raise FileNotFoundError(missing_message(path))
    return os.path.expanduser(path)


def read_state_dict(path: str) -> Mapping:
    """A state dict of tensors from a ``.pth`` (weights only, never arbitrary objects) or ``.safetensors`` file.

    A file that is not one raises ValueError naming it.
    """
    if path.endswith(".safetensors"):
        try:
            return load_file(path, device="cpu")
        except SafetensorError as error:
            raise ValueError(f"{path}: not a readable safetensors file ({error})") from error
    try:
        # weights_only: a .pth is a pickle, and a full unpickle would run whatever code the file names.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path}: not a plain state dict of tensors; refusing to unpickle other objects "
                         f"({str(error).splitlines()[0]})") from error
    except (RuntimeError, EOFError) as error:  # truncated, empty or not a torch file at all
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable PyTorch weights file ({reason})") from error
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state dict, found a {type(state).__name__}")
    return state


def check_state_dict(state: Mapping, expected: Mapping[str, torch.Tensor], path: str, what: str) -> dict:
    """``state`` as a dict when its keys and shapes are exactly those of ``expected``.

    Otherwise ValueError: ``"{path}: not {what}: missing K1, K2 (n in all); wrong shape K (shape) (want ...)"``.
    """
    state = dict(state)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} "
             f"(want {tuple(expected[k].shape)})"
             for k, v in state.items()
             if k in expected and not (isinstance(v, torch.Tensor) and v.shape == expected[k].shape)]
    if missing or unexpected or wrong:
        problems = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)} in all)"
                    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                    if keys]
        raise ValueError(f"{path}: not {what}: {'; '.join(problems)}")
    return state


def sha256(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (weights files run to hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
