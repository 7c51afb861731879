"""Rate-distortion curves on one image: each codec over a sweep of its settings."""
from __future__ import annotations

import numpy as np

from . import checkpoint as ckpts
from . import codec
from .classical import CODECS
from .metrics import bpp, ms_ssim, psnr

# Settings that cover roughly 0.05 to 2 bpp on photographs.
SWEEP = {
    "jpeg": [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90],
    "jpeg2000": [0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0],
    "webp": [2, 10, 20, 35, 50, 65, 75, 85, 92],
    "heif": [5, 15, 25, 35, 45, 55, 65, 75],
    "avif": [5, 15, 25, 35, 45, 55, 65, 75, 85],
}


def point(original: np.ndarray, data: bytes, decoded: np.ndarray) -> dict:
    h, w = original.shape[:2]
    return {"bpp": bpp(len(data), w, h), "psnr": psnr(original, decoded), "ms_ssim": ms_ssim(original, decoded)}


def classical_curve(name: str, rgb: np.ndarray, settings=None) -> list[dict]:
    c = CODECS[name]
    points = []
    for s in SWEEP[name] if settings is None else settings:
        data = c.encode(rgb, s)
        points.append(point(rgb, data, c.decode(data)))
    return sorted(points, key=lambda p: p["bpp"])


def cycle_curve(rgb: np.ndarray) -> list[dict]:
    points = []
    for path in ckpts.available():
        ck = ckpts.by_name(path.stem)
        data = codec.encode(ck, rgb)
        points.append(point(rgb, data, codec.decode(data, ck)))
    return sorted(points, key=lambda p: p["bpp"])


def as_columns(points: list[dict]) -> dict[str, list]:
    return {k: [p[k] for p in points] for k in ("bpp", "psnr", "ms_ssim")}
