"""The registry of every codec the project compares: the learned codec (`core.learned`) and the
classical ones, each a `PillowCodec` entry in `CLASSICAL` (what a codec is: `core.interface`).

Adding a codec is one entry in `CLASSICAL`: the CLI, the app, the plots and the evaluation read
their choices, defaults and labels from here.
"""
from __future__ import annotations

import io
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, ImageFile

from cycleapp import imageio  # noqa: F401  (registers the HEIF and JPEG XL plug-ins)
from cycleapp.core import learned
from cycleapp.core.interface import Codec, CodecError, Search
from cycleapp.core.learned import LEARNED, CycleCodec

_buffer_lock = threading.Lock()


@contextmanager
def _output_buffer(nbytes: int):
    """Let Pillow's encoders write up to `nbytes` in one piece. With optimised Huffman tables,
    libjpeg must write the whole file at once (it cannot suspend), and Pillow sizes that buffer
    by the image's own pixels, too small for a narrow image padded to 16x16 blocks: libjpeg then
    prints 'Suspension not allowed here' and fails.

    Pillow (12.3) offers no way to give one save a larger buffer: `JpegImagePlugin._save` computes
    the buffer from the image's pixels plus the lengths of `exif` and `extra`, which are written
    into the file (padding them would change its bytes), and `ImageFile._save` takes the largest of
    that and the module's `MAXBLOCK`. So the global is raised for the save and put back, under a
    lock so that two threads' saves cannot put back each other's value; another thread's Pillow
    call meanwhile only sees a larger buffer, which changes no output."""
    with _buffer_lock:
        old = ImageFile.MAXBLOCK
        ImageFile.MAXBLOCK = max(old, nbytes)
        try:
            yield
        finally:
            ImageFile.MAXBLOCK = old


def _last_clause(error: Exception) -> str:
    """The specific part of a library's message ('Error during encoding ...: Initialization
    problem: x265 encoder could not be opened ...' -> 'x265 encoder could not be opened ...')."""
    return str(error).rsplit(": ", 1)[-1] or type(error).__name__


@dataclass(frozen=True)
class PillowCodec(Codec):
    """A classical codec written and read by Pillow: `options(setting)` are its save() options.

    `max_side`: the largest width or height its library writes and reads back (0: no limit under
    ours); larger images are refused up front, as the libraries would print to stderr or fail
    obscurely. Any other failure of the library is a CodecError giving the size and the reason."""
    name: str
    label: str
    format: str
    options: Callable[[float], dict] = field(repr=False)
    setting_name: str
    search: Search
    settings: tuple  # settings that cover roughly 0.02 to 2 bpp on photographs
    max_side: int = 0

    def encode(self, rgb: np.ndarray, setting=None) -> bytes:
        h, w = rgb.shape[:2]
        if self.max_side and max(w, h) > self.max_side:
            raise CodecError(f"cannot encode a {w}x{h} image (width and height at most {self.max_side:,})")
        buf = io.BytesIO()
        options = self.options(self.default if setting is None else setting)
        # JPEG: 3 bytes per pixel of the image padded to 16x16 blocks, twice what libjpeg writes
        # for noise at quality 100.
        buffer = _output_buffer(3 * (16 * -(-w // 16)) * (16 * -(-h // 16)) + 65536) \
            if self.format == "JPEG" else nullcontext()
        try:
            with buffer:
                Image.fromarray(rgb, "RGB").save(buf, format=self.format, **options)
        except (OSError, ValueError, RuntimeError, EOFError) as e:
            raise CodecError(f"cannot encode a {w}x{h} image ({_last_clause(e)})") from None
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as img:
                return np.array(img.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, RuntimeError, EOFError) as e:
            raise CodecError(f"cannot read back its own file ({_last_clause(e)})") from None

    def describe(self, setting) -> str:
        # A real-valued setting found by bisection: four significant digits, no 5.901e-06.
        return f"{self.setting_name} {setting:g}" if self.search.kind == "integer" \
            else f"{self.setting_name} {round(float(f'{setting:.4g}'), 4):g}"


def _jpeg2000(bpp: float) -> dict:
    # Irreversible 9/7 wavelet with the colour transform (mct=1), the rate set directly: a
    # compression ratio against 24-bit RGB.
    return dict(irreversible=True, mct=1, quality_mode="rates", quality_layers=[24.0 / bpp], no_jp2=True)


CLASSICAL: tuple[PillowCodec, ...] = (
    # Optimised Huffman tables, 4:2:0 chroma: what a careful user of libjpeg gets.
    PillowCodec("jpeg", "JPEG", "JPEG", lambda q: dict(quality=int(q), optimize=True, subsampling=2),
                "quality", Search(1, 100, "integer"), (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90), 65_500),
    PillowCodec("jpeg2000", "JPEG 2000", "JPEG2000", _jpeg2000, "target bpp", Search(0.01, 24.0, "rate"),
                (0.02, 0.03, 0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)),
    PillowCodec("webp", "WebP", "WEBP", lambda q: dict(quality=float(q), method=6),
                "quality", Search(0, 100, "integer"), (2, 10, 20, 35, 50, 65, 75, 85, 92), 16_383),
    PillowCodec("heif", "HEIF (HEVC)", "HEIF", lambda q: dict(quality=int(q)),
                "quality", Search(1, 100, "integer"), (5, 15, 25, 35, 45, 55, 65, 75)),
    # libavif writes wider images than its decoder reads back (32,768 by default).
    PillowCodec("avif", "AVIF", "AVIF", lambda q: dict(quality=int(q), speed=6),
                "quality", Search(1, 100, "integer"), (5, 15, 25, 35, 45, 55, 65, 75, 85), 32_768),
    # libjxl at effort 7 (its default, the recommended trade-off), the quality a real number
    # (100 would be lossless, which the lossy encoder refuses).
    PillowCodec("jxl", "JPEG XL", "JXL", lambda q: dict(quality=float(q), effort=7),
                "quality", Search(0, 99, "continuous"), (0, 10, 25, 40, 55, 70, 80, 88, 95)),
)


def names() -> list[str]:
    """Every codec name, the learned codec first."""
    return [LEARNED, *(c.name for c in CLASSICAL)]


def matchable() -> list[str]:
    """The codecs that can be matched to another's file size."""
    return [c.name for c in CLASSICAL if c.search is not None]


def labels() -> dict[str, str]:
    """Human label of every codec name."""
    return {LEARNED: CycleCodec.label, **{c.name: c.label for c in CLASSICAL}}


def check(requested: list[str], allowed: list[str]) -> None:
    """ValueError naming the choices if any requested codec is not allowed here."""
    unknown = [n for n in requested if n not in allowed]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)} (choose from {', '.join(allowed)})")


def get(name: str) -> Codec:
    """The one entry of a classical codec; ValueError naming the choices if unknown."""
    check([name], [c.name for c in CLASSICAL])
    return next(c for c in CLASSICAL if c.name == name)


def family(name: str, rdoq_weight: float = learned.DEFAULT_RDOQ_WEIGHT) -> list[Codec]:
    """Every entry of a name: the learned codec at each installed code size (smallest first), or
    the one entry of a classical codec. Its points over their settings make one RD curve."""
    if name == LEARNED:
        return [*learned.presets(rdoq_weight), learned.layered()]
    return [get(name)]
