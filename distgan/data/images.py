"""Decoding one image file into 8-bit grey or RGB, the same way for every data source.

PIL's ``convert("L")`` clips a 16-bit grey PNG at 255 (nearly every pixel turns white) and drops an alpha
channel onto whatever colour the transparent pixels happen to hold. Here instead:

* EXIF orientation is applied (cameras store rotation as a tag, not in the pixels); a broken EXIF block
  is no unreadable image: its orientation tag alone is applied, or, when that cannot be read either, none;
* 16-bit (and 32-bit integer) grey is scaled to 8 bits by /257, so 65535 -> 255, not clipped;
* transparency (RGBA, LA, PA, or a palette or grey image with a transparent colour) is composited on
  black: what transparent areas hide is often junk, and black is at least the same everywhere;
* grey is replicated to RGB, or RGB reduced to luma (ITU-R 601-2, PIL's ``L``), as ``channels`` asks;
  palette, bilevel and CMYK images are converted by PIL; 48-bit RGB PNGs are reduced to 8 bits by PIL.

A training image (``fit_square``) is then resized so its shorter side is ``data.resolution`` and
centre-cropped. A JPEG much larger than that is decoded at 1/2, 1/4 or 1/8 of its size by the decoder
itself (``Image.draft``: the DCT is scaled, most of the decoding work is skipped), but never below twice the
final size, so Lanczos still does the last reduction: Pillow's ``thumbnail`` makes the same trade with its
default ``reducing_gap`` of 2. For data sets stored larger than they are trained (FFHQ's 1024 px at 256),
decoding is the data path's largest CPU cost.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
"""PIL's modes of 16-bit grey PNGs (``I;16*``, or ``I`` in older Pillow releases)."""


def to_8bit(img: Image.Image, channels: int) -> Image.Image:
    """A decoded image as 8-bit ``L`` (``channels`` 1) or ``RGB`` (3), by the rules in the module docstring."""
    if img.mode in SIXTEEN_BIT_MODES:
        # convert("L") would clip 0..65535 at 255; rescale the full 16-bit range instead.
        stored = np.asarray(img, dtype=np.float64)
        wide = np.clip(stored, 0, 65535)
        if isinstance(img.info.get("transparency"), int):  # the transparent grey level, composited on black
            wide[stored == img.info["transparency"]] = 0
        img = Image.fromarray(np.rint(wide / 257).astype(np.uint8), mode="L")
    elif img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return img.convert("L" if channels == 1 else "RGB")


def to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    """A decoded PIL image as uint8 [C, H, W], C = ``channels``."""
    array = np.asarray(to_8bit(img, channels), dtype=np.uint8)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.require(array, requirements=["C", "W"]))  # PIL's buffer is read-only


REDUCING_GAP = 2
"""A JPEG is decoded reduced to no less than this many times the final size (see the module docstring)."""


TRANSPOSES = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
"""EXIF orientation -> the transpose that turns the stored pixels upright (as ``ImageOps.exif_transpose``)."""


def orientation(img: Image.Image) -> int:
    """The image's EXIF orientation (1, as stored, when it has none or the tag cannot be read): what both the
    check's upright size and decoding go by."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
        return value if value in TRANSPOSES else 1
    except Exception:  # metadata that does not parse: the pixels, not the tags, make the image
        return 1


def _upright(img: Image.Image) -> Image.Image:
    """``img`` (decoded) turned as its EXIF orientation says. ``exif_transpose`` also rewrites the EXIF block,
    and a camera's mistyped tag (text where a number belongs) makes that raise (TypeError, struct.error,
    ZeroDivisionError); the pixels are fine, so the orientation tag alone turns them, or, unreadable, none."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # the pixels are decoded already: whatever fails here is metadata
        method = TRANSPOSES.get(orientation(img))
        return img.transpose(method) if method is not None else img.copy()


def open_upright(path: Union[Path, BinaryIO], at_least: Optional[int] = None) -> Image.Image:
    """The decoded image of ``path`` with its EXIF orientation applied (raises what PIL raises on a bad file:
    pixels that cannot be decoded; bad metadata is no reason to fail, see ``_upright``).

    ``at_least``: a JPEG may be decoded at a reduced scale, keeping both sides at least this many pixels."""
    with Image.open(path) as img:
        if at_least is not None and img.format == "JPEG":
            img.draft(None, (at_least, at_least))  # both sides >= at_least: the shorter one whichever way up
        img.load()  # decode now, inside the ``with`` (the file closes on leaving it), before the metadata
        return _upright(img)


def fit_square(path: Union[Path, BinaryIO], resolution: int, channels: int) -> np.ndarray:
    """One training image as uint8 [C, R, R]: upright, 8-bit grey or RGB, shorter side resized to R with
    Lanczos (which antialiases when shrinking), centre-cropped. Every image data source decodes with this."""
    img = to_8bit(open_upright(path, at_least=REDUCING_GAP * resolution), channels)
    img = ImageOps.fit(img, (resolution, resolution), method=Image.Resampling.LANCZOS)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def read_image(path: Path, channels: int) -> torch.Tensor:
    """One image file as uint8 [C, H, W], upright."""
    return to_tensor(open_upright(path), channels)


def decode_bytes(data: bytes, channels: int) -> torch.Tensor:
    """Encoded image bytes (a file's, an object's, a shard member's) as uint8 [C, H, W], upright: exactly
    ``read_image`` of a file holding them, so a streamed source decodes as a local folder does."""
    return to_tensor(open_upright(io.BytesIO(data)), channels)
