"""Reading any image a user may give us into 8-bit RGB, and writing outputs safely."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
import pillow_jxl  # noqa: F401  (registers JPEG XL with Pillow: input, and output for the classical codecs)
from pillow_heif import register_heif_opener

register_heif_opener()  # HEIC / HEIF input (and HEIF output for the classical codecs)

MAX_PIXELS = 100_000_000  # refuse decompression bombs with a clear message


class ImageReadError(ValueError):
    """The input is missing or is not an image we can read."""


def to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert any Pillow image to (H, W, 3) uint8 RGB the way a viewer would show it.

    EXIF orientation is applied; 16-bit and float images are scaled to 8 bits; CMYK, palette
    and grayscale become RGB; transparency is composited onto white (a .cyc has no alpha).
    """
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(np.round(a * 255.0 / peak), 0, 255).astype(np.uint8)
        img = Image.fromarray(a, "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = a * 255.0 if a.max() <= 1.0 else a
        img = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "L" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return np.array(img.convert("RGB"), dtype=np.uint8)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into (H, W, 3) uint8; ImageReadError with a one-line reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"no such file: {path}")
    if path.is_dir():
        raise ImageReadError(f"is a directory, not an image: {path}")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageReadError(f"image too large ({img.width}x{img.height} pixels, "
                                     f"limit {MAX_PIXELS:,})")
            img.load()
            return to_rgb8(img)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"not a readable image: {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes so that either the whole file appears or nothing does.

    The temporary file is created with mode 0666, so the kernel applies the user's umask and the
    output gets the permissions any other program's output would (mkstemp would give 0600).
    """
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def png_bytes(rgb: np.ndarray) -> bytes:
    """Lossless PNG of (H, W, 3) uint8 pixels."""
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()
