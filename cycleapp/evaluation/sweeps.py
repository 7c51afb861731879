"""Rate-distortion curves on one image: each codec over the settings it sweeps (`registry`)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from cycleapp.evaluation import registry
from cycleapp.evaluation.measure import METRICS, measure
from cycleapp.evaluation.metrics import Original

POINT = ("bpp", "psnr", "ms_ssim")


def curve(name: str, rgb: np.ndarray, settings=None, keys=POINT,
          before_each: Callable[[], None] = lambda: None) -> list[dict]:
    """One point per entry and setting of a codec (the learned codec: one per code size),
    sorted by bpp; `settings` replaces the sweep of a single-entry codec. `keys` are the
    `Measurement` values each point holds: a metric not named is never computed (a PSNR plot
    pays for no MS-SSIM). A codec that cannot encode this image (a size its library refuses) has
    no points. `before_each` is called before each point is measured (the app's plot waits there
    while a comparison runs). The original's part of SSIM and MS-SSIM is computed once for all
    the points (`metrics.Original`)."""
    points, original = [], Original(rgb)
    metrics = [k for k in keys if k in METRICS]
    for entry in registry.family(name):
        for setting in settings or entry.settings:
            before_each()
            m = measure(entry, rgb, setting)
            if m.ok:
                points.append(m.scored(original, metrics).values(keys))
    return sorted(points, key=lambda p: p["bpp"])
