"""Classical codecs, configured as an expert would, and matching them to a target file size.

Each codec turns (H, W, 3) uint8 pixels into file bytes at a `setting` and back. `match_size`
searches the setting whose file is closest to a byte budget (the .cyc file's size).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from . import imageio  # noqa: F401  (registers the HEIF plug-in)

TOLERANCE = 0.03  # a match is within +-3 % of the target bytes


@dataclass(frozen=True)
class ClassicalCodec:
    name: str
    label: str
    low: float  # setting range; larger setting -> larger file
    high: float
    integer: bool
    _encode: Callable[[Image.Image, float], bytes]
    _setting_name: str

    def encode(self, rgb: np.ndarray, setting: float) -> bytes:
        return self._encode(Image.fromarray(rgb, "RGB"), setting)

    def decode(self, data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8)

    def describe(self, setting: float) -> str:
        return f"{self._setting_name} {setting:g}" if self.integer else f"{self._setting_name} {setting:.4g}"


def _save(img: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, **options)
    return buf.getvalue()


def _jpeg(img, q):
    # Optimised Huffman tables, 4:2:0 chroma: what a careful user of libjpeg gets.
    return _save(img, format="JPEG", quality=int(q), optimize=True, subsampling=2)


def _jpeg2000(img, bpp):
    # Irreversible 9/7 wavelet with the colour transform (mct=1), rate set directly in bpp.
    ratio = 24.0 / bpp  # compression ratio against 24-bit RGB
    return _save(img, format="JPEG2000", irreversible=True, mct=1, quality_mode="rates",
                 quality_layers=[ratio], no_jp2=True)


def _webp(img, q):
    return _save(img, format="WEBP", quality=float(q), method=6)


def _heif(img, q):
    return _save(img, format="HEIF", quality=int(q))


def _avif(img, q):
    return _save(img, format="AVIF", quality=int(q), speed=6)


CODECS: dict[str, ClassicalCodec] = {c.name: c for c in [
    ClassicalCodec("jpeg", "JPEG", 1, 100, True, _jpeg, "quality"),
    ClassicalCodec("jpeg2000", "JPEG 2000", 0.01, 24.0, False, _jpeg2000, "target bpp"),
    ClassicalCodec("webp", "WebP", 0, 100, True, _webp, "quality"),
    ClassicalCodec("heif", "HEIF (HEVC)", 1, 100, True, _heif, "quality"),
    ClassicalCodec("avif", "AVIF", 1, 100, True, _avif, "quality"),
]}


@dataclass
class Match:
    codec: str
    setting: float
    data: bytes
    target: int
    note: str  # empty when within tolerance

    @property
    def within_tolerance(self) -> bool:
        return abs(len(self.data) - self.target) <= TOLERANCE * self.target


def match_size(codec: ClassicalCodec, rgb: np.ndarray, target: int, max_tries: int = 24) -> Match:
    """The setting whose file size is closest to `target` bytes (bisection on the setting)."""
    tried: dict[float, bytes] = {}

    def size_at(s: float) -> int:
        if s not in tried:
            tried[s] = codec.encode(rgb, s)
        return len(tried[s])

    lo, hi = codec.low, codec.high
    if codec.integer:
        while hi - lo > 1 and len(tried) < max_tries:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if size_at(mid) <= target else (lo, mid)
        candidates = [lo, hi]
    else:
        # The setting is a rate: start at the target itself, then correct by the size error.
        s = min(max(8 * target / (rgb.shape[0] * rgb.shape[1]), lo), hi)
        for _ in range(max_tries):
            error = size_at(s) / target
            if abs(error - 1) <= TOLERANCE / 3:
                break
            s = min(max(s / error, lo), hi)
            if s in tried:
                break
        candidates = list(tried)
    best = min(candidates, key=lambda s: (abs(size_at(s) - target), s))
    match = Match(codec.name, best, tried[best], target, "")
    if not match.within_tolerance:
        smallest = size_at(codec.low)
        if smallest > target:
            match.note = f"cannot go below {smallest} bytes (target {target})"
        elif size_at(codec.high) < target:
            match.note = f"largest file is {size_at(codec.high)} bytes (target {target})"
        else:
            match.note = f"no setting within 3 % (closest {len(match.data)} bytes for target {target})"
    return match
