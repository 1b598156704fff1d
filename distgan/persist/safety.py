"""Checkpoint files are never unpickled in full: static checks and weights-only reads.

DeepSpeed 0.19 unpickles its ``.pt`` files in full (its
``TorchCheckpointEngine.load`` turns weights-only loading off), so a crafted
file in a run directory would run code on resume. ``check_pickles`` reads each file's pickle statically for
the globals it names before DeepSpeed touches the checkpoint (no tensor data is
read), and ``weights_only_loads`` makes DeepSpeed's own reads weights-only,
allowing only the classes its checkpoints hold (``DEEPSPEED_GLOBALS``).
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import torch
from safetensors import SafetensorError, safe_open

from distgan.persist.errors import UnsafeCheckpoint

# The classes DeepSpeed 0.19's own checkpoints pickle besides tensors and plain data, found by saving
# checkpoints at ZeRO 0-3 in fp32 and bf16 and listing what weights-only loading refuses: ZeRO 1-3 optimizer
# states hold the loss scaler, the ZeRO stage and (ZeRO 1-2) parameter slice addresses. DynamicLossScaler is
# fp16's loss scaler (GPUs only), in the same slot. ZeRO-0 files hold none of them.
DEEPSPEED_GLOBALS = ("deepspeed.runtime.fp16.loss_scaler.LossScaler",
                     "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
                     "deepspeed.runtime.zero.config.ZeroStageEnum",
                     "deepspeed.utils.tensor_fragment.fragment_address")


def _first_pickle(path: Path) -> Optional[bytes]:
    """The pickle ``torch.load`` would unpickle: a zip archive's ``data.pkl``, or a bare pickle file's first
    one; None when the file holds neither (safetensors, garbage, a truncated archive)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")), None)
                return archive.read(name) if name else None
        with open(path, "rb") as f:
            head = f.read(2)
            # a pickle of protocol 2+ opens with PROTO; the first bytes of a safetensors file are a length
            return head + f.read() if head[:1] == b"\x80" and 2 <= head[1:2][0] <= 5 else None
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, IndexError):
        return None


def _named_globals(data: bytes) -> Optional[list[str]]:
    """Every global a well-formed pickle names (GLOBAL, INST, STACK_GLOBAL), read with ``pickletools``
    (nothing is unpickled); None when ``data`` is no complete pickle. STACK_GLOBAL's names are the last two
    strings pushed, literal or from the memo: good enough to name them in a message."""
    names: list[str] = []
    strings: list[str] = []
    memo: dict[int, Optional[str]] = {}
    pushed: Optional[str] = None  # the string the previous opcode pushed, if it pushed one
    try:
        for op, arg, _ in pickletools.genops(data):
            string = None
            if op.name in ("GLOBAL", "INST"):
                names.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                names.append(".".join(strings[-2:]) if len(strings) >= 2 else "<a computed global>")
            elif "UNICODE" in op.name or op.name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                string = str(arg)
            elif op.name == "MEMOIZE":
                memo[len(memo)] = pushed
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = pushed
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                string = memo.get(arg)
            if string is not None:
                strings.append(string)
            pushed = string if op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT") else pushed
    except (ValueError, EOFError):
        return None
    return names


def pickled_code(path: Path) -> list[str]:
    """The globals a pickle in ``path`` would call or build beyond tensors, plain data and DeepSpeed's own
    classes, read statically: nothing is unpickled and no tensor data read.

    Empty for a clean torch archive and for a file holding no well-formed pickle (those are for the
    structural checks to name). A well-formed pickle that torch's weights-only reader cannot parse is not
    one ``torch.save`` wrote: every global it names counts.
    """
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        return sorted(set(found) - set(DEEPSPEED_GLOBALS))
    except Exception:  # not a torch archive, or opcodes torch.save never writes; look closer
        pass
    data = _first_pickle(Path(path))
    names = _named_globals(data) if data is not None else None
    return sorted(set(names)) if names else []


def _unsafe(path: Path, names: list[str]):
    return UnsafeCheckpoint(
        f"checkpoint file {path} carries pickled code: it names {', '.join(names)}, which no distgan or "
        f"DeepSpeed checkpoint holds. It was refused without being unpickled, and the run stops rather than "
        f"resume an older checkpoint from the same directory: find out what wrote this file; then empty "
        f"{_checkpoint_of(path)} (an empty checkpoint is refused as incomplete and the newest complete one "
        f"before it resumed) or start a new --name")


def _checkpoint_of(path: Path) -> Path:
    """The checkpoint directory a file belongs to: ``C`` for ``C/G/state/x.pt`` and ``C/x.safetensors``."""
    return next((p.parent for p in path.parents if p.name in ("G", "D")), path.parent)


def check_pickles(directory: Path) -> None:
    """Raise ``UnsafeCheckpoint`` when a file of the checkpoint carries pickled code.

    Every DeepSpeed ``.pt`` file under ``G/`` and ``D/`` is checked, and every ``.safetensors`` file that is
    not one (a pickle put in its place). Only each archive's pickle is read, never tensor data: a few
    milliseconds per file. A file that cannot be parsed is not unsafe; the structural checks name it.
    """
    directory = Path(directory)
    for path in sorted(directory.glob("[GD]/**/*.pt")):
        if names := pickled_code(path):
            raise _unsafe(path, names)
    for path in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                continue
        except (SafetensorError, OSError):
            if names := pickled_code(path):
                raise _unsafe(path, names) from None


def check_pickles_under(root: Path) -> None:
    """``UnsafeCheckpoint`` when any ``.pt`` file under ``root`` carries pickled code (a converted checkpoint)."""
    for path in sorted(Path(root).glob("**/*.pt")):
        if names := pickled_code(path):
            raise _unsafe(path, names)


def deepspeed_classes() -> list:
    classes = []
    for dotted in DEEPSPEED_GLOBALS:
        module, _, name = dotted.rpartition(".")
        classes.append(getattr(importlib.import_module(module), name))
    return classes


@contextlib.contextmanager
def weights_only_loads(engine) -> Iterator[None]:
    """While DeepSpeed loads, its checkpoint engine unpickles with ``weights_only=True``.

    DeepSpeed 0.19's ``TorchCheckpointEngine.load`` turns weights-only loading off; every file its
    ``load_checkpoint`` reads (model states, ZeRO optimizer shards) goes through the engine's
    ``checkpoint_engine.load``, which this shadows on the instance. ``check_pickles`` has already looked at
    each file; this closes the gap between that look and the read. Another kind of checkpoint engine
    (DeepSpeed's fast or decoupled writers, which distgan does not configure) is left as it is.
    """
    # DeepSpeed loads only where its checkpoints are read (the driver checks them without it).
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    reader = getattr(engine, "checkpoint_engine", None)
    if not isinstance(reader, TorchCheckpointEngine):
        yield
        return
    classes = deepspeed_classes()

    def load(path: str, map_location=None):
        try:
            with torch.serialization.safe_globals(classes):
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            if names := pickled_code(Path(path)):
                raise _unsafe(Path(path), names) from None
            raise  # not code, a corrupt pickle: load() names the file

    reader.load = load
    try:
        yield
    finally:
        del reader.load
