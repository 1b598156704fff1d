"""The export formats: each writes a traced generator to a file and loads that file back into a runtime
that the check (``distgan.deploy.export``) can feed.

* ``onnx``: ``torch.onnx.export(dynamo=True)``, the torch.export-based exporter. Since torch 2.9 it is the
  default and the maintained one; the TorchScript-based exporter (``dynamo=False``) still runs in 2.13 but
  warns that it "will be removed". It needs ``onnxscript``. The file is loaded back with ONNX Runtime's CPU
  provider, the runtime most deploy targets use.
* ``torchscript``: ``torch.jit.trace`` with ``check_inputs`` at the check batches (and image sizes), loaded
  back with ``torch.jit.load``. TorchScript is deprecated upstream in favour of torch.export, but it is what
  LibTorch (C++) programs load; a trace fits because no generator branches on its input's values.

onnx, onnxscript and onnxruntime come with the optional ``export`` extra, so they are imported only when an
ONNX export runs: ``distgan sample`` and ``upscale`` work without them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from distgan.config import ConfigError
from distgan.core.registry import Registry
from distgan.deploy.signature import Signature

Runner = Callable[[tuple[torch.Tensor, ...]], np.ndarray]
"""An exported model loaded back: inputs (as for the wrapper's forward) -> its output as float32 numpy."""

EXTRA_HINT = "install the export extra: pip install 'distgan[export]' (onnx, onnxscript, onnxruntime)"


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    """The default file name's ending."""
    write: Callable[[Signature, Path, torch.Generator], dict]
    """Trace the signature's module and write it to the path; returns facts for the metadata."""
    load: Callable[[Path, Signature], Runner]


FORMATS: Registry[Format] = Registry("export format")


def _missing(exc: ImportError) -> ConfigError:
    return ConfigError(f"ONNX export needs {exc.name}, which is not installed; {EXTRA_HINT}")


def write_onnx(sig: Signature, path: Path, generator: torch.Generator) -> dict:
    try:
        # The optional export extra: imported here so the rest of distgan runs without it.
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter translates through it)
    except ImportError as exc:
        raise _missing(exc) from None
    dims: dict[str, torch.export.Dim] = {}  # one Dim per axis name: z's and labels' batch must agree
    shapes = {name: {axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes.items()}
              for name, axes in sig.dynamic.items()}
    # torch.onnx logs a warning per torchvision op it cannot register (no torchvision here); onnxscript's
    # optimizer and onnx_ir's passes log every folded constant and merged initializer at INFO (dozens of lines).
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # Both say nothing about this export: a deprecation inside torch's pytree, and a note that z and
            # labels share the "batch" axis (they do, by design).
            warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
            warnings.filterwarnings("ignore", message="# The axis name: .* will not be used")
            with torch.no_grad():
                # external_data=False: one self-contained file (ONNX's protobuf limit is 2 GB; ESRGAN is 67 MB).
                torch.onnx.export(sig.module, sig.example(generator), str(path), input_names=list(sig.inputs),
                                  output_names=[sig.output], dynamo=True, dynamic_shapes=shapes,
                                  external_data=False, verbose=False)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    return {"opset": max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))}


def load_onnx(path: Path, sig: Signature) -> Runner:
    try:
        import onnxruntime  # the optional export extra
    except ImportError as exc:
        raise _missing(exc) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = tuple(i.name for i in session.get_inputs())
    if names != sig.inputs:
        raise ValueError(f"{path}: the ONNX graph takes inputs {names}, expected {sig.inputs}")

    def run(inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
        return session.run([sig.output], {n: x.numpy() for n, x in zip(sig.inputs, inputs)})[0]

    return run


def write_torchscript(sig: Signature, path: Path, generator: torch.Generator) -> dict:
    with warnings.catch_warnings():
        # The user asked for TorchScript: its deprecation notice (docs/commands.md says it) is noise here.
        warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated")
        with torch.no_grad():
            # check_inputs: torch re-traces at each and fails on a graph that differs (a shape baked in).
            traced = torch.jit.trace(sig.module, sig.example(generator), check_inputs=sig.checks(generator))
    traced.save(str(path))
    return {}


def load_torchscript(path: Path, sig: Signature) -> Runner:
    module = torch.jit.load(str(path), map_location="cpu").eval()

    @torch.no_grad()
    def run(inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
        return module(*inputs).numpy()

    return run


FORMATS.register("onnx")(Format("onnx", ".onnx", write_onnx, load_onnx))
FORMATS.register("torchscript")(Format("torchscript", ".torchscript.pt", write_torchscript, load_torchscript))
