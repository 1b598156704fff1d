"""``distgan export``: a trained generator as an ONNX or TorchScript file, checked against PyTorch first.

The generator is found and rebuilt as ``distgan sample`` and ``upscale`` do it
(``distgan.persist.export``: a run, a checkpoint, a generator directory or file, or a URI), wrapped with a
clean signature (``distgan.deploy.signature``), traced with a dynamic batch (and dynamic height and width
for image inputs), and written to a temporary file beside the target. That file is then loaded back in its
runtime (ONNX Runtime, ``torch.jit.load``) and run on random inputs at two batch sizes (and two image
sizes); only when every output is within ``TOLERANCE`` of PyTorch's is it moved into place
(``os.replace``: the target is never a partial file), with a JSON description beside it (``F.json``: a
sidecar rather than ONNX ``metadata_props``, so both formats carry the same description and a reader needs
no ONNX library to see what a file takes).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from distgan.config import ConfigError
from distgan.deploy.formats import FORMATS, Format, Runner
from distgan.deploy.signature import Signature, signature
from distgan.persist.export import find_generator, load_generator
from distgan.persist.storage import is_uri
from distgan.tasks import task_of

TOLERANCE = 1e-4
"""Largest max-abs difference from PyTorch (float32, outputs in [-1, 1]) an export may show. One 8-bit
level of a saved image is 2/255 = 7.8e-3, so 1e-4 is invisible in any image, while a broken export (a
shape baked in, an op translated wrongly) is off by 1e-2 or more. The same float32 math reordered by
another runtime's kernels stays far below it: measured at most 3.4e-6 on the test networks and 1.5e-5 on
a StyleGAN2 of default width (docs/commands.md); deeper generators may come closer, so ``tolerance=``
(``--tolerance``) can raise it, and the description records the tolerance used."""
METADATA_FORMAT = "distgan-export"
CHECK_SEED = 0
"""Seed of the trace and check inputs: the same export of the same weights reports the same difference."""


class ExportCheckFailed(ValueError):
    """The exported file, run in its runtime, does not compute what the PyTorch generator computes."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    metadata_path: Path
    max_abs_diff: float
    """Largest absolute difference from PyTorch over every check input."""
    metadata: dict
    """What ``metadata_path`` holds."""

    def summary(self) -> str:
        checked = ", ".join(self.metadata["checked_shapes"])
        return (f"checked the {self.metadata['export_format']} export against PyTorch on inputs {checked}: "
                f"max abs difference {self.max_abs_diff:.3g} (tolerance {self.metadata['tolerance']:g})")


def max_abs_difference(reference: nn.Module, runner: Runner, inputs: tuple[torch.Tensor, ...]) -> float:
    """Max |runner(inputs) - reference(inputs)|; infinite when the shapes differ or either holds a NaN."""
    with torch.no_grad():
        want = reference(*inputs).float().numpy()
    got = np.asarray(runner(inputs), dtype=np.float32)
    if got.shape != want.shape:
        return float("inf")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return float("inf") if np.isnan(diff).any() else float(diff.max(initial=0.0))


def check_export(reference: nn.Module, runner: Runner, cases: Sequence[tuple[torch.Tensor, ...]],
                 tolerance: float = TOLERANCE, what: str = "the export") -> float:
    """The largest difference over ``cases``; ExportCheckFailed naming the worst case when it exceeds
    ``tolerance``, or when ``reference`` itself answers the same input differently twice."""
    with torch.no_grad():
        unsteady = [c for c in cases
                    if not torch.allclose(reference(*c), reference(*c), rtol=0, atol=0, equal_nan=True)]
    if unsteady:
        raise ExportCheckFailed(f"{what}: the PyTorch generator is not deterministic (two runs on inputs "
                                f"{shapes_text(unsteady[0])} differ), so no export can be checked against it; "
                                f"nothing was written")
    diffs = [max_abs_difference(reference, runner, inputs) for inputs in cases]
    worst = int(np.argmax(diffs))
    if not diffs[worst] <= tolerance:
        raise ExportCheckFailed(f"{what} differs from PyTorch by up to {diffs[worst]:.3g} (max abs difference, "
                                f"on inputs {shapes_text(cases[worst])}), more than the tolerance "
                                f"{tolerance:g}; nothing was written")
    return diffs[worst]


def shapes_text(inputs: tuple[torch.Tensor, ...]) -> str:
    return "+".join("x".join(str(s) for s in x.shape) for x in inputs)


def write_checked(sig: Signature, fmt: Union[str, Format], out: Union[str, Path], description: Optional[dict] = None,
                  reference: Optional[nn.Module] = None, tolerance: float = TOLERANCE) -> ExportResult:
    """Export ``sig.module`` as ``fmt`` to ``out`` (and ``out.json``) once the exported file, loaded back,
    matches ``reference`` (default: the module itself) within ``tolerance``; otherwise ExportCheckFailed and
    no file is left. ``description`` joins the JSON description."""
    fmt = fmt if isinstance(fmt, Format) else FORMATS.get(fmt, key="format")
    if not tolerance > 0:
        raise ConfigError(f"tolerance: must be > 0, got {tolerance}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta_path = out.with_name(out.name + ".json")
    # Temporary names in the target's directory, so os.replace is atomic (one file system); unique per call,
    # and created by the writers themselves, so the file gets the umask's mode (mkstemp's would be 0600).
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    meta_tmp = tmp.with_name(tmp.name + ".json")
    try:
        facts = fmt.write(sig, tmp, torch.Generator().manual_seed(CHECK_SEED))
        cases = sig.checks(torch.Generator().manual_seed(CHECK_SEED + 1))
        diff = check_export(reference if reference is not None else sig.module, fmt.load(tmp, sig), cases,
                            tolerance, what=f"the {fmt.name} export for {out}")
        meta = {"format": METADATA_FORMAT, "version": 1, **(description or {}), "export_format": fmt.name,
                "file": out.name, **facts, "inputs": input_shapes(sig), "output": output_shape(sig, cases),
                "tolerance": tolerance, "max_abs_diff": diff, "checked_shapes": [shapes_text(c) for c in cases],
                "torch": torch.__version__}
        meta_tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, out)
        os.replace(meta_tmp, meta_path)
    finally:
        tmp.unlink(missing_ok=True)
        meta_tmp.unlink(missing_ok=True)
    return ExportResult(out, meta_path, diff, meta)


def input_shapes(sig: Signature) -> dict:
    """Per input: dtype and shape, dynamic axes by name (what a caller of the file must feed)."""
    example = sig.example(torch.Generator().manual_seed(CHECK_SEED))
    return {name: {"dtype": str(x.dtype).removeprefix("torch."),
                   "shape": [sig.dynamic[name].get(axis, size) for axis, size in enumerate(x.shape)]}
            for name, x in zip(sig.inputs, example)}


def output_shape(sig: Signature, cases: Sequence[tuple[torch.Tensor, ...]]) -> dict:
    """The output's name and shape; an axis that changed over the checks is named by the first input's axis
    it follows (``4*height`` for a x4 upscaler)."""
    with torch.no_grad():
        outs = [sig.module(*inputs).shape for inputs in cases]
    first = sig.inputs[0]
    shape: list = []
    for axis, size in enumerate(outs[0]):
        label = sig.dynamic[first].get(axis)
        if all(o[axis] == size for o in outs) or label is None:
            shape.append(size)
            continue
        ratio = size // cases[0][0].shape[axis]
        shape.append(label if ratio == 1 else f"{ratio}*{label}")
    # Images are clamped to [-1, 1] by the wrapper; other samples (2-D points) are unbounded.
    return {"name": sig.output, "dtype": "float32", "shape": shape, "range": [-1, 1] if sig.output == "image" else None}


def export_target(out: Union[str, Path, None], weights: Path, fmt: Format) -> Path:
    """The file an export writes: ``out`` as given; in a directory ``out`` names (one that exists, or any
    written with a trailing slash), or beside the weights without one, the weights' own name with the
    format's suffix (``generator.onnx``)."""
    name = weights.stem + fmt.suffix
    if out is None:
        return weights.with_name(name)
    given = Path(out).expanduser()
    return given / name if given.is_dir() or str(out).endswith(("/", os.sep)) else given


def export_generator(source: Union[str, Path], format: str = "onnx", out: Union[str, Path, None] = None,
                     tolerance: Optional[float] = None) -> ExportResult:
    """A run, checkpoint, generator directory or file (or its URI) -> a checked ONNX or TorchScript file.

    ``out`` defaults to the weights' name beside them (``RUN/generator.onnx``); an export of a URI needs one.
    ``tolerance`` None means ``TOLERANCE``.
    """
    fmt = FORMATS.get(format, key="format")  # a bad format fails before the generator is read
    if out is None and is_uri(source):
        raise ConfigError(f"{source} is remote: give --out (out=) for where the {fmt.name} file goes")
    weights = find_generator(source)  # a URI is downloaded once, then read locally
    generator, meta = load_generator(weights)
    task = task_of(meta)
    target = export_target(out, weights, fmt)
    model = meta.get("model", {})
    sig = signature(generator, tuple(meta["data_shape"]))
    description = {"source": str(source), "family": model.get("family"), "conditional": bool(sig.num_classes),
                   "task": task.name, "scale": meta.get("scale"), "z_dim": sig.latent_dim,
                   "num_classes": sig.num_classes, "class_names": list(meta.get("class_names") or []),
                   "data_shape": list(meta["data_shape"]), "step": meta.get("step"), "ema": meta.get("ema"),
                   **({"noise_mode": sig.noise_mode} if sig.noise_mode else {})}
    return write_checked(sig, fmt, target, description, tolerance=TOLERANCE if tolerance is None else tolerance)
