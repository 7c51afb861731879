"""What is coded: not the integer code itself but its symbols, each channel minus an integer
prediction from the decoded neighbours in the same channel.

PREDICTORS: none, the left value, the one above, the planar left + up - up-left of lossless image
coders, or the median edge detector of LOCO-I / JPEG-LS ("med": planar, except that next to an edge,
where the up-left value lies outside the range of the left and upper ones, it takes the one of
those on the far side of the edge). Channel 0, the DC of each 16x16 block, uses planar or med. The
other channels' predictors are chosen per channel from the data (`choose_predictors`): on clean
photographs the chroma DCs of the blocks are as smooth as the luma DC, and coding their differences
saves a fifth of their bits. The decoder gets every symbol first, then undoes the prediction:
cumulative sums for the linear predictors, and for med one anti-diagonal of positions at a time
(each reads only positions on the diagonals before it).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DC_CLAMP = 1024  # the DC is clipped to [-DC_CLAMP, DC_CLAMP], so its residual fits 4 * DC_CLAMP
AC_CLAMP = 512  # every other channel is clipped to [-AC_CLAMP, AC_CLAMP]
PREDICTORS = ("none", "left", "up", "planar", "med")  # index = the value stored per channel
PLANAR, MED = PREDICTORS.index("planar"), PREDICTORS.index("med")
DC_PREDICTORS = (PLANAR, MED)  # the DC is always predicted
PREDICTION_GAIN = 0.97  # a channel is predicted when that leaves at most 97 % of its bits


def residuals(code: torch.Tensor, predictor: torch.Tensor) -> torch.Tensor:
    """Symbols of a code (B, C, H, W): each channel minus its predictor's value (zeros outside).

    Linear in the code (med: piecewise), so a straight-through code passes its gradient on. Each
    predictor is computed for its own channels only, and only they are written: most channels have
    none, and a whole-code prediction of zeros to subtract cost the encoder 0.1 s on a 2K photo."""
    out = code.clone()
    predictor = predictor.to(code.device)
    for kind in set(predictor.tolist()) - {0}:
        at = (predictor == kind).nonzero()[:, 0]
        p = F.pad(code[:, at], (1, 0, 1, 0))
        l, u, c = p[..., 1:, :-1], p[..., :-1, 1:], p[..., :-1, :-1]
        if PREDICTORS[kind] == "left":
            value = l
        elif PREDICTORS[kind] == "up":
            value = u
        elif kind == PLANAR:
            value = l + u - c
        else:
            value = median_edge(l, u, c)
        out[:, at] = code[:, at] - value
    return out


def median_edge(left, up, corner):
    """LOCO-I's median edge detector (torch or numpy, integer values): the median of left, up and
    left + up - corner."""
    where, low, high = (torch.where, torch.minimum, torch.maximum) if isinstance(left, torch.Tensor) \
        else (np.where, np.minimum, np.maximum)
    lo, hi = low(left, up), high(left, up)
    return where(corner >= hi, lo, where(corner <= lo, hi, left + up - corner))


def from_residuals(symbols: np.ndarray, predictor: np.ndarray) -> np.ndarray:
    """Inverse of `residuals` for one integer (C, H, W) array: cumulative sums along the rows
    (left), the columns (up) or both (planar); med a diagonal at a time (`_undo_median_edge`)."""
    out = symbols.copy()
    along_rows = (predictor == 1) | (predictor == PLANAR)
    along_columns = (predictor == 2) | (predictor == PLANAR)
    out[along_rows] = out[along_rows].cumsum(2)
    out[along_columns] = out[along_columns].cumsum(1)
    med = predictor == MED
    if med.any():
        out[med] = _undo_median_edge(symbols[med])
    return out


def _undo_median_edge(symbols: np.ndarray) -> np.ndarray:
    """The code whose med residuals are these integer symbols (C, H, W). A position reads its left,
    upper and upper-left neighbours, all on earlier anti-diagonals (i + j smaller), so the values
    are recovered one anti-diagonal at a time: H + W - 1 vector steps."""
    c, h, w = symbols.shape
    x = np.zeros((c, h + 1, w + 1), np.int64)  # a row and a column of zeros before: as `residuals` pads
    for d in range(h + w - 1):
        i = np.arange(max(0, d - w + 1), min(h, d + 1))
        j = d - i
        x[:, i + 1, j + 1] = symbols[:, i, j] + median_edge(x[:, i + 1, j], x[:, i, j + 1], x[:, i, j])
    return x[:, 1:, 1:]


def code_limits(predictor: torch.Tensor) -> torch.Tensor:
    """Largest |code value| per channel such that every symbol stays in the tables' range."""
    growth = torch.tensor([1, 2, 2, 4, 2])[predictor.cpu()]  # |residual| <= growth * max |code|
    limits = AC_CLAMP // growth
    limits[0] = DC_CLAMP
    return limits


def empirical_bits(values: torch.Tensor) -> float:
    _, counts = torch.unique(values, return_counts=True)
    p = counts.double() / counts.sum()
    return float(-(counts * p.log2()).sum())


def choose_predictors(code: torch.Tensor) -> torch.Tensor:
    """Per channel, the predictor whose symbols have the fewest bits on this integer code (B, C, H, W)
    (their empirical entropy), if it saves enough; channel 0, always predicted, planar or med."""
    channels = code.shape[1]
    costs = torch.tensor([[empirical_bits(residuals(code, torch.full((channels,), k))[:, c])
                           for k in range(len(PREDICTORS))] for c in range(channels)])
    best = costs.argmin(1)
    chosen = torch.where(costs.min(1).values < PREDICTION_GAIN * costs[:, 0], best, 0)
    chosen[0] = DC_PREDICTORS[int(costs[0, list(DC_PREDICTORS)].argmin())]
    return chosen
