"""The Python API: `cycleapp.encode(image, code_size=...)` and `cycleapp.decode(data)`.

Images may be PIL images (any mode: EXIF orientation, palettes, 16 bits and alpha are handled as
for the command line; the frame the image is at, for an animation) or numpy arrays, (H, W) grey or
(H, W, 3/4) RGB(A), uint8. Sizes over the limits (`imageio.size_problem`: 100,000,000 pixels, a
width or height over 1,048,560) are refused with ValueError before any conversion.
"""
from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from cycleapp.core import codec, learned
from cycleapp.core.rate import match_learned
from cycleapp.imageio import size_problem, to_rgb8

DEFAULT_CODE_SIZE = learned.DEFAULT_CODE_SIZE


def as_rgb(image) -> np.ndarray:
    """(H, W, 3) uint8 pixels of a PIL image or a numpy array; TypeError/ValueError otherwise."""
    if isinstance(image, Image.Image):
        check_size(*image.size)
        return to_rgb8(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a PIL image or a numpy array, not {type(image).__name__}")
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"expected a uint8 array of shape (H, W), (H, W, 3) or (H, W, 4), "
                         f"not {image.dtype} {image.shape}")
    if image.size == 0:
        raise ValueError("the image is empty")
    check_size(image.shape[1], image.shape[0])
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    return to_rgb8(Image.fromarray(np.ascontiguousarray(image)))


def check_size(width: int, height: int) -> None:
    problem = size_problem(width, height)
    if problem:
        raise ValueError(problem)




class TargetNotReached(UserWarning):
    """A target size the codec cannot reach on this image (below its smallest file, above its
    lossless one, or between two of its files): the file written is the nearest it makes, and
    the warning's message says how far off. `warnings.catch_warnings(record=True)` sees it."""


def encode(image, code_size: str = DEFAULT_CODE_SIZE, target_bytes: int | None = None,
           lossless: bool = False, max_error: int | None = None) -> bytes:
    """The bytes of a .cyc file for an image, in one of four modes:
    - a code size (`python -m cycleapp sizes`), the default;
    - `target_bytes`: as near that size as the codec reaches, from its smallest file to lossless
      (within 3 % where it can; a `TargetNotReached` warning where it cannot);
    - `lossless=True`: the decoded pixels equal the image's 8-bit RGB bit for bit;
    - `max_error=N` (1 to 16): every pixel of every channel within N of the image's.
    Only the code size may be given together with another mode (it is then ignored)."""
    modes = (target_bytes is not None) + bool(lossless) + (max_error is not None)
    if modes > 1:
        raise ValueError("choose one of target_bytes, lossless and max_error")
    lo, hi = learned.NEAR_LOSSLESS_RANGE
    if max_error is not None and not (isinstance(max_error, (int, np.integer)) and not isinstance(max_error, bool)
                                      and lo <= max_error <= hi):
        raise ValueError(f"max_error must be a whole number from {lo} to {hi}")
    rgb = as_rgb(image)
    if target_bytes is not None:
        m = match_learned(rgb, int(target_bytes))
        if m.note:
            warnings.warn(TargetNotReached(f"target {int(target_bytes):,} bytes not reached: {m.note}; "
                                           f"the file is {len(m.data):,} bytes"), stacklevel=2)
        return m.data
    if lossless or max_error is not None:
        code_size = learned.LOSSLESS if lossless else f"{learned.NEAR_LOSSLESS}{int(max_error)}"
    return learned.by_name(code_size).encode(rgb)


def decode(data: bytes) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of .cyc bytes; the checkpoint is found by the id in the file (a
    lossless or near-lossless file of format 12 on names none and needs none)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected the bytes of a .cyc file, not {type(data).__name__}")
    return codec.decode(bytes(data))
