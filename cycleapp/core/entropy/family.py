"""The family of coding tables of the channels after the DC: zero-mean generalised Gaussians of
one of SHAPES, at one of SCALES log-spaced scales (`ac_tables`).

Training fits Laplace scales (shape 1) to the continuous code plus noise; `train.calibrate` then
chooses each (channel, context)'s shape and scale on the real integer codes of the training photos,
whose peak at zero is sharper and whose tails are heavier than a Laplace's. The tables are computed
once, at checkpoint export, and stored with the weights (once for all code sizes,
`checkpoint.SHARED_TABLES`); the encoder and the decoder hand exactly those numbers to
`constriction`, so encode and decode never recompute them differently. A table moves along the grid
of scales (`moved`) for rate control and for the per-image moves (`rdo.adaptation`); its shape stays.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .prediction import AC_CLAMP

LIKELIHOOD_FLOOR = 1e-9
SCALES = 64  # scales of the coding tables, log-spaced in [SCALE_MIN, SCALE_MAX]
SCALE_MIN, SCALE_MAX = 0.05, 128.0
SHAPES = (0.55, 0.7, 0.85, 1.0)  # exponents of the generalised Gaussian tables: 1 is the Laplace
LAPLACE = SHAPES.index(1.0)  # the shape training fits (`EntropyModel.likelihood`)
TABLES = SCALES * len(SHAPES)  # table index = shape * SCALES + scale
GRID_RATIO = (SCALE_MAX / SCALE_MIN) ** (1 / (SCALES - 1))  # from one table's scale to the next


def scale_grid() -> torch.Tensor:
    return torch.logspace(math.log10(SCALE_MIN), math.log10(SCALE_MAX), SCALES, dtype=torch.float64)


def ac_tables() -> torch.Tensor:
    """The coding tables of the channels after the DC (TABLES, 2 * AC_CLAMP + 1), float32: the
    probabilities of the integers -AC_CLAMP .. AC_CLAMP under zero-mean generalised Gaussians,
    density ~ exp(-(|x| / scale) ** shape), for every shape of SHAPES and scale of the grid. The
    rounding of the encoder pulls values to zero, so real symbols have a sharper peak and heavier
    tails than a Laplace (shape 1); `train.calibrate` picks each (channel, context)'s table.
    A symbol k > 0 has half the mass of |x| in [k - 1/2, k + 1/2], taken as a difference of upper
    tails (`gammaincc`), not of CDF values near 1, which would round the far tails to exactly 0 and
    let the bit counts (`CodingTables.bits`) that RDOQ, the moves and calibration read rate a rare
    large value at hundreds of bits; like the Laplace likelihood, every probability is at least
    LIKELIHOOD_FLOOR (constriction gives no symbol less than 2^-PRECISION anyway). Computed once
    per process (every code size's load checks its stored tables against them); a copy each call."""
    return _ac_tables().clone()


@functools.cache
def _ac_tables() -> torch.Tensor:
    magnitude = torch.arange(AC_CLAMP + 1, dtype=torch.float64)
    out = []
    for shape in SHAPES:
        a = torch.tensor(1 / shape, dtype=torch.float64)
        for scale in scale_grid():
            beyond = lambda v: torch.special.gammaincc(a, (v / scale) ** shape)  # P(|x| > v)
            zero = 1 - beyond(torch.tensor(0.5, dtype=torch.float64))
            side = 0.5 * (beyond(magnitude[1:] - 0.5) - beyond(magnitude[1:] + 0.5))
            out.append(torch.cat([side.flip(0), zero.view(1), side]))
    return torch.stack(out).clamp_min(LIKELIHOOD_FLOOR).float()


def moved(index: np.ndarray, steps) -> np.ndarray:
    """Table indices (shape * SCALES + scale) with every scale moved `steps` grid steps narrower,
    clipped to the grid; the shapes stay. How the tables follow a per-image move or rate control."""
    shape, scale = np.divmod(index, SCALES)
    return shape * SCALES + np.clip(scale - steps, 0, SCALES - 1)
