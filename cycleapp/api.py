"""The Python API: `cycleapp.encode(image, code_size=...)` and `cycleapp.decode(data)`.

Images may be PIL images (any mode: EXIF orientation, palettes, 16 bits and alpha are handled as
for the command line; the frame the image is at, for an animation) or numpy arrays, (H, W) grey or
(H, W, 3/4) RGB(A), uint8. Sizes over the limits (`imageio.size_problem`: 100,000,000 pixels, a
width or height over 1,048,560) are refused with ValueError before any conversion.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from . import codec
from . import codecs as registry
from .imageio import size_problem, to_rgb8
from .matching import match_learned

DEFAULT_CODE_SIZE = "medium"


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


def encode(image, code_size: str = DEFAULT_CODE_SIZE, target_bytes: int | None = None) -> bytes:
    """The bytes of a .cyc file for an image, at a code size (`python -m cycleapp sizes`), or, if
    `target_bytes` is given, as near that size as the model reaches (within 3 % where it can)."""
    if target_bytes is not None:
        return match_learned(as_rgb(image), int(target_bytes)).data
    return registry.learned(code_size).encode(as_rgb(image))


def decode(data: bytes) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of .cyc bytes; the checkpoint is found by the id in the file."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected the bytes of a .cyc file, not {type(data).__name__}")
    return codec.decode(bytes(data))
