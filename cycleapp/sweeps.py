"""Rate-distortion curves on one image: each codec over the settings it sweeps (`codecs`)."""
from __future__ import annotations

import numpy as np

from . import codecs as registry
from .measure import measure

POINT = ("bpp", "psnr", "ms_ssim")


def curve(name: str, rgb: np.ndarray, settings=None, keys=POINT) -> list[dict]:
    """One point per entry and setting of a codec (the learned codec: one per code size),
    sorted by bpp; `settings` replaces the sweep of a single-entry codec. `keys` are the
    `Measurement` values each point holds: a metric not named is never computed (a PSNR plot
    pays for no MS-SSIM)."""
    points = [measure(entry, rgb, s).values(keys)
              for entry in registry.family(name) for s in (settings or entry.settings)]
    return sorted(points, key=lambda p: p["bpp"])
