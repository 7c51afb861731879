"""Reading any image a user may give us into 8-bit RGB, in bounded memory, and writing outputs safely.

Limits, checked from the file's header before any pixel is decoded:
- MAX_PIXELS (100,000,000): the largest image decoded at all (a .cyc file holds no more either).
- MAX_SIDE (1,048,560 = 65,535 x 16): a .cyc header stores the code's height and width, 1/16 of the
  image's, in 16 bits, so no wider or taller image can be encoded.
Callers may ask for less (`compare` does: it keeps seven reconstructions and computes SSIM).

Memory: the decoder's own full-size image (1 to 4 bytes a pixel, by mode), the 3-byte RGB output,
and stripes of about STRIPE_PIXELS pixels: 16-bit, float and 1-bit images are converted stripe by
stripe in float32, never as full-size float copies. With `fit` (the app's downscale) the image is
reduced while it is read: a JPEG decodes at 1/2, 1/4 or 1/8 scale (`Image.draft`), any format is
box-reduced stripe by stripe and then resized with Lanczos (Pillow's `reducing_gap` scheme, as in
`Image.thumbnail`), so the full-size RGB image never exists.

Defined behaviours: EXIF orientation is applied; 16-bit images are scaled to 8 bits (65535 -> 255),
32-bit integer images too when any value is over 255; float images are read as 0..1 when no finite
value is over 1, else as 0..255, and NaN and -inf become 0, +inf 255; palette, grayscale, CMYK and
1-bit images become RGB; transparency is composited onto white (a .cyc has no alpha); of an
animated or multi-page file the first frame is read, with a note saying so.
"""
from __future__ import annotations

import math
import os
import secrets
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
import pillow_jxl  # noqa: F401  (registers JPEG XL with Pillow: input, and output for the classical codecs)
from pillow_heif import register_heif_opener

from cycleapp.core.bitstream import MAX_PIXELS, MAX_SIDE  # what a .cyc file can hold is what we read

register_heif_opener()  # HEIC / HEIF input (and HEIF output for the classical codecs)

STRIPE_PIXELS = 1 << 20  # pixels converted at a time (a few MB of float32 scratch)
REDUCING_GAP = 2.0  # Pillow's thumbnail default: box-reduce while at least 2x the final size remains
NOT_AN_IMAGE = "not a readable image"
MULTI_FRAME_NOTE = "the file is animated or has several pages; only its first frame is used"
ORIENTATION = 0x0112  # the EXIF tag


class ImageReadError(ValueError):
    """The input is missing or is not an image we can read; `reason` says why, without the path."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"cannot read {path}: {reason}")


@dataclass
class Picture:
    """An image as read: its RGB pixels, its size in the file (as displayed) and notes for the user."""
    rgb: np.ndarray
    size: tuple[int, int]  # (width, height) in the file, EXIF orientation applied
    notes: list[str] = field(default_factory=list)

    @property
    def reduced(self) -> bool:
        return (self.rgb.shape[1], self.rgb.shape[0]) != self.size


def fit_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size of an image scaled down (aspect kept) to at most max_pixels; its own if it fits."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))


def size_problem(width: int, height: int, max_pixels: int = MAX_PIXELS, fit: int | None = None,
                 limit_note: str = "") -> str:
    """Why an image of this size is refused ('' if it is not). With `fit`, the image is decoded at
    full size (max_pixels bounds that) and the side limit applies to the reduced size."""
    out_w, out_h = fit_size(width, height, fit) if fit else (width, height)
    if max(out_w, out_h) > MAX_SIDE:
        return (f"the image is {out_w:,}x{out_h:,} pixels, wider or taller than the {MAX_SIDE:,} "
                f"a CycleCodec file can hold")
    if width * height > max_pixels:
        return (f"the image is {width:,}x{height:,} = {width * height:,} pixels, over the limit of "
                f"{max_pixels:,}{limit_note}")
    return ""


# EXIF orientation: the stored pixels, seen through these views, are the image as displayed
# (ImageOps.exif_transpose's transposes: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90
# clockwise, 7 transverse, 8 rotate 90 counter-clockwise). `_STORED` is the inverse view, so that
# writing the stored rows into it fills the displayed image with no second full-size copy.
_DISPLAYED = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1),
}
_STORED = {**_DISPLAYED, 6: _DISPLAYED[8], 8: _DISPLAYED[6]}


def orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 to 8; 1 when absent or invalid)."""
    value = img.getexif().get(ORIENTATION, 1)
    return value if value in _DISPLAYED else 1


def _high_bit_scale(img: Image.Image) -> float | None:
    """The factor that brings a 16-bit, 32-bit or float image to 0..255 (None for 8-bit modes)."""
    if img.mode.startswith("I;16"):
        return 255 / 65535
    if img.mode == "I":
        return 255 / 65535 if img.getextrema()[1] > 255 else 1.0
    if img.mode == "F":
        top = -math.inf
        for part in _stripes(img, 1):
            a = np.asarray(part, dtype=np.float32)
            finite = a[np.isfinite(a)]
            top = max(top, float(finite.max())) if finite.size else top
        return 255.0 if top <= 1.0 else 1.0
    return None


def _stripes(img: Image.Image, multiple: int):
    """The image in horizontal stripes of about STRIPE_PIXELS pixels (a multiple of `multiple` rows)."""
    w, h = img.size
    rows = max(1, STRIPE_PIXELS // w // multiple) * multiple
    for top in range(0, h, rows):
        yield img.crop((0, top, w, min(h, top + rows)))


def _rgb_stripe(part: Image.Image, scale: float | None) -> Image.Image:
    """One stripe as 8-bit RGB, alpha composited onto white."""
    if scale is not None:
        a = np.asarray(part, dtype=np.float32) * np.float32(scale)
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
        part = Image.fromarray(np.rint(np.clip(a, 0, 255, out=a), out=a).astype(np.uint8), "L")
    if (part.mode in ("P", "L", "RGB") and "transparency" in part.info) or part.mode in ("LA", "La", "PA", "RGBa"):
        part = part.convert("RGBA")
    if part.mode == "RGBA":
        part = Image.alpha_composite(Image.new("RGBA", part.size, (255, 255, 255, 255)), part)
    return part.convert("RGB")


def to_rgb8(img: Image.Image, fit: int | None = None) -> np.ndarray:
    """Convert any Pillow image to (H, W, 3) uint8 RGB the way a viewer would show it (see the
    module docstring), stripe by stripe; with `fit`, scaled down to at most that many pixels."""
    img.load()
    turn = orientation(img)
    scale = _high_bit_scale(img)
    w, h = img.size
    if fit and w * h > fit:
        target = fit_size(w, h, fit)
        fx, fy = max(1, int(w / target[0] / REDUCING_GAP)), max(1, int(h / target[1] / REDUCING_GAP))
        small = Image.new("RGB", (-(-w // fx), -(-h // fy)))
        top = 0
        for part in _stripes(img, fy):
            reduced = _rgb_stripe(part, scale).reduce((fx, fy))
            small.paste(reduced, (0, top))
            top += reduced.height
        out = np.asarray(small.resize(target, Image.Resampling.LANCZOS, box=(0, 0, w / fx, h / fy)))
        return np.array(_DISPLAYED[turn](out))  # a small, writable copy
    out = np.empty((w, h, 3) if turn >= 5 else (h, w, 3), np.uint8)
    stored = _STORED[turn](out)
    top = 0
    for part in _stripes(img, 1):
        stored[top:top + part.height] = np.asarray(_rgb_stripe(part, scale))
        top += part.height
    return out


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, fit: int | None = None,
               limit_note: str = "") -> Picture:
    """Read an image file (its first frame) into RGB, refusing sizes over the limits before decoding;
    `fit` scales it down to at most that many pixels while reading. ImageReadError with a one-line
    reason for anything that is not a readable image within the limits."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "it is a directory, not an image")
    with _decoding(path, max_pixels, limit_note):
        img = Image.open(path)
    with img:
        w, h = img.size  # the limits are symmetric in width and height: no orientation needed yet
        problem = size_problem(w, h, max_pixels, fit, limit_note)
        if problem:
            raise ImageReadError(path, problem)
        with _decoding(path, max_pixels, limit_note):
            # A phone's MPO JPEG holds its photo and auxiliary images (a preview, a depth map).
            notes = [MULTI_FRAME_NOTE] if getattr(img, "is_animated", False) and img.format != "MPO" else []
            if fit and w * h > fit:  # JPEG: decode at 1/2, 1/4 or 1/8 scale
                target = fit_size(w, h, fit)
                img.draft(None, (int(target[0] * REDUCING_GAP), int(target[1] * REDUCING_GAP)))
            rgb = to_rgb8(img, fit)
            return Picture(rgb, (w, h) if orientation(img) < 5 else (h, w), notes)


@contextmanager
def _decoding(path: Path, max_pixels: int, limit_note: str):
    """Any failure of the decoders (what Pillow and its plug-ins raise on a damaged or hostile
    file varies) as an ImageReadError; Pillow's decompression-bomb warning silenced, as our own
    limits apply."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except UnidentifiedImageError:
        raise ImageReadError(path, NOT_AN_IMAGE) from None
    except Image.DecompressionBombError:
        raise ImageReadError(path, f"the image is over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
                                   f"over the limit of {max_pixels:,}{limit_note}") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it") from None
    except OSError as e:
        raise ImageReadError(path, e.strerror or _first_sentence(e)) from None
    except Exception as e:
        raise ImageReadError(path, f"damaged or unsupported file ({_first_sentence(e)})") from None


def _first_sentence(error: Exception) -> str:
    """A library's message on one line, up to its first sentence's end (libjxl adds advice on
    building it in debug mode, libheif a trailing newline)."""
    return " ".join(str(error).split()).split(". ")[0] or type(error).__name__


def load_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file into (H, W, 3) uint8; ImageReadError with a one-line reason otherwise."""
    return read_image(path, max_pixels).rgb


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
