"""Super-resolve whole images with a trained SR generator, tile by tile (``distgan upscale``).

G is trained on small crops but meant for whole photos, and a whole photo at
once may not fit: G's activations grow with the image (an RRDBNet on a 2000 px
side needs tens of GB). So the image is cut into tiles, each run with some
context around it, and only each tile's own part of G's output is kept. Memory
is then one tile's activations plus the output image, whatever the input size.

The file path reads PNG/JPEG files (or a folder of them), converts them to the
generator's channels, and writes PNGs atomically, so an interrupted run never
leaves a half-written image under its final name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from distgan.config import ConfigError
from distgan.data.folder import hidden
from distgan.data.images import SIXTEEN_BIT_MODES, open_upright, to_8bit
from distgan.metrics.image_quality import to_uint8
from distgan.persist.export import find_generator, load_generator
from distgan.tasks.super_resolution.task import SuperResolutionTask

PathLike = Union[str, os.PathLike]
Device = Union[str, torch.device, None]
EXTENSIONS = (".png", ".jpg", ".jpeg")


class UpscaleError(ConfigError):
    """An input, output or generator the upscaler cannot use; the message names it (the CLI prints it alone)."""


def tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: ``(start, end)`` of each tile and ``(start, end)`` of the context G sees for it."""
    if tile <= 0 or tile >= size:
        return [(0, size, 0, size)]
    return [(start, min(start + tile, size), max(start - overlap, 0), min(start + tile + overlap, size))
            for start in range(0, size, tile)]


def _run_tiles(g: nn.Module, lr: torch.Tensor, scale: int, tile: int, overlap: int, device: Device,
               put: Callable[[int, int, torch.Tensor], None]) -> None:
    """Run G over the tiles of ``lr`` and hand each tile's own output region to ``put(row, col, piece)``."""
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise ValueError(f"expected one image [1, C, H, W], got shape {tuple(lr.shape)}")
    if tile < 0 or overlap < 0 or scale < 1:
        raise ValueError(f"tile and overlap must be >= 0 and scale >= 1, got {tile}, {overlap}, {scale}")
    if device is None:
        device = next(g.parameters(), torch.empty(0)).device
    g.to(device)
    was_training = g.training
    g.eval()  # BatchNorm from running statistics: the same function of the pixels on every tile
    try:
        with torch.no_grad():
            for y0, y1, cy0, cy1 in tile_spans(lr.shape[2], tile, overlap):
                for x0, x1, cx0, cx1 in tile_spans(lr.shape[3], tile, overlap):
                    sr = g(lr[:, :, cy0:cy1, cx0:cx1].to(device=device, dtype=torch.float32))
                    want = ((cy1 - cy0) * scale, (cx1 - cx0) * scale)
                    if sr.dim() != 4 or tuple(sr.shape[2:]) != want:
                        raise ValueError(f"G turned a {cy1 - cy0}x{cx1 - cx0} input into shape {tuple(sr.shape)}, "
                                         f"not {want[0]}x{want[1]}; is it a x{scale} super-resolution generator?")
                    put(y0 * scale, x0 * scale, sr[:, :, (y0 - cy0) * scale:(y1 - cy0) * scale,
                                                   (x0 - cx0) * scale:(x1 - cx0) * scale])
    finally:
        g.train(was_training)


def upscale_tensor(g: nn.Module, lr: torch.Tensor, scale: int, tile: int = 0, overlap: int = 16,
                   device: Device = None) -> torch.Tensor:
    """``lr [1, C, H, W]`` in [-1, 1] -> G's output ``[1, C, H*scale, W*scale]`` (float32, on the CPU).

    ``tile`` 0 runs the whole image at once. Otherwise the image is cut into
    ``tile`` x ``tile`` low-resolution tiles (smaller at the right and bottom
    edges); each is run with ``overlap`` extra pixels of context on every side
    (fewer where the image ends) and only the tile's own region of the output
    is kept.

    Why that is exact: a fully convolutional G whose receptive-field radius is
    ``r`` low-resolution pixels computes each output pixel from the input within
    ``r`` pixels of it. With ``overlap >= r`` every kept pixel sees the same
    input as in the whole-image run, and where the context is clamped it is
    clamped at the image's own border, so G's padding sees what it sees on the
    whole image. The result equals the untiled one up to float rounding (other
    sizes may take other conv algorithms). A smaller overlap gives an
    approximation, and the difference lies at the seams: only output pixels
    within ``r - overlap`` of a tile border differ. ``r`` is about the number of
    3x3 convs at low resolution plus half of those at 2x, and so on (SRResNet
    with B blocks: at most 2B + 4; RRDBNet's is in the hundreds, where an overlap
    of 16-32 is the usual, visually seamless, approximation). Models with global
    operations (attention, global pooling, per-image normalization) are not
    local, and tiling them is always approximate.

    G runs in eval mode under ``torch.no_grad`` on ``device`` (default: where its
    parameters are; G is moved there) and its training flag is restored after.
    """
    holder: list[torch.Tensor] = []

    def put(row: int, col: int, piece: torch.Tensor) -> None:
        if not holder:  # allocated once G's channel count is known
            holder.append(torch.empty(1, piece.shape[1], lr.shape[2] * scale, lr.shape[3] * scale))
        holder[0][:, :, row:row + piece.shape[2], col:col + piece.shape[3]] = piece.float().cpu()

    _run_tiles(g, lr, scale, tile, overlap, device, put)
    return holder[0]


def upscale_to_uint8(g: nn.Module, lr: torch.Tensor, scale: int, tile: int = 0, overlap: int = 16,
                     device: Device = None, extra_channels: int = 0) -> np.ndarray:
    """As :func:`upscale_tensor`, into a uint8 array ``[H*scale, W*scale, C + extra_channels]``.

    Each tile goes to 0..255 (``to_uint8``: clamp, round half to even) as it
    comes, so a 8000 px RGB result takes 192 MB instead of 768 MB in float32.
    ``extra_channels`` are left zero for the caller (an alpha channel).
    """
    holder: list[np.ndarray] = []

    def put(row: int, col: int, piece: torch.Tensor) -> None:
        if not holder:
            holder.append(np.zeros((lr.shape[2] * scale, lr.shape[3] * scale, piece.shape[1] + extra_channels),
                                   dtype=np.uint8))
        pixels = to_uint8(piece)[0].permute(1, 2, 0).cpu().numpy()
        holder[0][row:row + pixels.shape[0], col:col + pixels.shape[1], :pixels.shape[2]] = pixels

    _run_tiles(g, lr, scale, tile, overlap, device, put)
    return holder[0]


def resolve_device(name: Device) -> torch.device:
    """``auto`` is the GPU when one is visible, else the CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UpscaleError(f"--device {name}: no CUDA GPU is visible here; use --device cpu (or auto)")
    return device


def read_image(path: Path, channels: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """A PNG/JPEG as ``(uint8 [H, W, channels], alpha [H, W] or None)``.

    Grey becomes RGB by repeating it, RGB becomes grey by ITU-R 601 luma
    (Pillow's ``convert("L")``); 16-bit grey is scaled to 8 bits (Pillow already
    reads 16-bit colour PNGs as 8-bit); JPEG EXIF rotation is applied. Alpha is
    split off: G sees the colour channels only (their values under transparent
    pixels as stored), and the caller resizes alpha on its own.
    """
    try:
        img = open_upright(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # Pillow raises SyntaxError for some broken PNG chunks, OSError for truncated and unknown files.
        raise UpscaleError(f"{path}: not a readable image ({exc})") from None
    img, alpha = _split_alpha(img)
    pixels = np.asarray(to_8bit(img, channels))  # the data sets' decoding rules (16-bit grey, luma)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels), alpha


def _split_alpha(img: Image.Image) -> tuple[Image.Image, Optional[np.ndarray]]:
    """``img`` without its transparency, for ``to_8bit``, and its alpha (uint8 ``[H, W]``), or None without one.
    Kept apart instead of composited on black as training data is: the output keeps its transparency."""
    if img.mode in SIXTEEN_BIT_MODES:
        # convert("RGBA") would clip 16-bit grey at 255 (a washed-out image, and a transparent colour above 255
        # never matched): the grey goes to to_8bit as it is, which rescales it, and alpha is where it equals tRNS.
        # Popped from the info: G sees the stored values under transparent pixels, as for every other mode.
        alpha = None
        if "transparency" in img.info:
            alpha = np.where(np.asarray(img) == img.info.pop("transparency"), 0, 255).astype(np.uint8)
        return img, alpha
    if "A" in img.getbands() or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return rgba.convert("RGB"), np.asarray(rgba.getchannel("A"))
    return img, None


def write_png(pixels: np.ndarray, path: Path) -> None:
    """``[H, W, C]`` uint8 (C = 1..4: L, LA, RGB, RGBA) to ``path``, atomically: a temporary file, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_sr_generator(generator: PathLike, scale: Optional[int], command: str = "upscale"
                      ) -> tuple[nn.Module, int, int]:
    """``(G, its scale, its channels)``; errors for anything that is not an SR generator of that scale, naming
    ``command`` as the one that needs it."""
    try:
        g, meta = load_generator(generator)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # unreadable JSON, weights or architecture
        raise UpscaleError(f"cannot load a generator from {generator}: {exc}") from None
    weights = find_generator(generator)
    if not SuperResolutionTask.made(meta) or not isinstance(meta.get("scale"), int):
        family = meta.get("model", {}).get("family", "?")
        raise UpscaleError(f"{weights} is not a super-resolution generator (a {family!r} generator whose "
                           f"metadata has no task {SuperResolutionTask.name!r} and scale); {command} needs one "
                           f"trained with model.family srresnet or rrdb")
    if scale is not None and scale != meta["scale"]:
        raise UpscaleError(f"--scale {scale} differs from the generator's scale {meta['scale']} ({weights} "
                           f"upscales x{meta['scale']}); leave --scale out or use a x{scale} generator")
    return g, meta["scale"], int(meta["data_shape"][0])


def _plan(source: Path, out: Optional[PathLike], scale: int) -> list[tuple[Path, Path]]:
    """``(input file, output PNG)`` pairs: one for a file, the tree mirrored for a folder."""
    if source.is_file():
        target = Path(out) if out is not None else source.with_name(f"{source.stem}_x{scale}.png")
        if target.is_dir():
            target = target / f"{source.stem}_x{scale}.png"
        if target.suffix.lower() != ".png":
            raise UpscaleError(f"--out {str(target)!r}: upscale writes PNG files; give a name ending in .png")
        if target.resolve() == source.resolve():
            raise UpscaleError(f"--out {str(target)!r} would overwrite the input; choose another name")
        return [(source, target)]
    if not source.is_dir():
        raise FileNotFoundError(f"{source} does not exist")
    root = Path(out) if out is not None else source.resolve().with_name(f"{source.resolve().name}_x{scale}")
    if root.exists() and not root.is_dir():
        raise UpscaleError(f"--out {str(root)!r}: the input is a folder, so the output must be one too")
    inside = root.resolve()
    # An output folder inside the input is not input; hidden names (.ipynb_checkpoints/, macOS's ._x.png) are
    # skipped as a training folder skips them.
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                   and not p.resolve().is_relative_to(inside) and not hidden(p.relative_to(source).as_posix()))
    if not files:
        raise UpscaleError(f"{source}: no PNG or JPEG images in this folder or below it")
    pairs, seen = [], {}
    for path in files:
        target = root / path.relative_to(source).with_suffix(".png")
        if target in seen:
            raise UpscaleError(f"{seen[target]} and {path} would both be written to {target}; rename one")
        seen[target] = path
        pairs.append((path, target))
    return pairs


def upscale_path(generator: PathLike, input: PathLike, out: Optional[PathLike] = None, tile: int = 0,
                 overlap: int = 16, scale: Optional[int] = None, device: Device = "auto",
                 progress: Optional[Callable[[Path, Path], None]] = None) -> list[Path]:
    """Upscale an image file, or every PNG/JPEG under a folder, with an exported SR generator.

    ``generator``: a run directory, checkpoint directory or ``generator.safetensors``
    whose metadata says ``task: sr``. ``out`` defaults to ``<stem>_x{s}.png`` beside a
    file, or ``<folder>_x{s}/`` beside a folder (the tree mirrored, every output a
    PNG). An input with alpha keeps it: G upscales the colour channels and the
    alpha channel is resized bicubically (G was never trained on alpha). Returns
    the written paths; ``progress(input, output)`` is called after each.
    """
    if tile < 0 or overlap < 0:
        raise UpscaleError(f"tile and overlap must be >= 0, got tile {tile}, overlap {overlap}")
    source = Path(input)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    device = resolve_device(device)
    g, scale, channels = load_sr_generator(generator, scale)
    written = []
    for src, dst in _plan(source, out, scale):
        pixels, alpha = read_image(src, channels)
        lr = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1  # Pillow's is read-only
        result = upscale_to_uint8(g, lr, scale, tile, overlap, device, extra_channels=int(alpha is not None))
        if alpha is not None:
            big = Image.fromarray(alpha).resize((result.shape[1], result.shape[0]), Image.BICUBIC)
            result[:, :, -1] = np.asarray(big)
        write_png(result, dst)
        written.append(dst)
        if progress is not None:
            progress(src, dst)
    return written
