"""The encoder's rate-distortion choices, which the decoder never repeats: the rounding of the code
(`quantize`, RDOQ) and the per-image moves of the coding tables (`adaptation`).

The tables fit the training photos on average; one photo's channels are often sparser or busier (a
grey photo's chroma, a smooth one's textures). So the encoder moves every channel's tables (all its
contexts together, each keeping its shape) by the whole number of grid steps of scale that codes
that channel in the fewest bits, the moves' own bits in the stream included (`stream`: 1.5 to 2
bits a channel); the moves make the files 4 to 7 % smaller on Kodak and the dev photos, and where
they would not pay, as on a small image, the stream holds a flag alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .context_rule import CONTEXTS
from .prediction import AC_CLAMP
from .stream import ADAPT_RANGE, DIFFERENCE_BITS, coded_after_dc

if TYPE_CHECKING:
    from .tables import CodingTables


def quantize(tables: CodingTables, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rate-distortion optimised rounding of a continuous code y (B, C, H, W), encoder side only.

    Each value of an unpredicted channel after the DC is rounded, then moved one step toward
    zero wherever that saves more bits (under its table, contexts taken from the plain rounding)
    than it costs in weight[c] * (squared error in the code), as classical encoders do (RDOQ /
    trellis). Predicted channels keep the plain rounding (a value there is also its neighbours'
    prediction). The decoder is untouched: it decodes whatever integers it is given.
    """
    q = tables.clamp(torch.round(y))
    if q.shape[1] == 1:
        return q
    table = tables.table(tables.contexts(tables.symbols(q))[:, 1:])
    near = q[:, 1:]
    # only a non-zero value of an unpredicted channel can move (the others' gain would be 0)
    free = (tables.predictor[1:] == 0).view(1, -1, 1, 1)
    at = ((near != 0) & free).nonzero(as_tuple=True)
    near_at, table_at, y_at = near[at], table[at], y[:, 1:][at].double()
    toward_zero = near_at - torch.sign(near_at)
    bits = lambda v: tables.bits(table_at, v.to(torch.int64))
    error = lambda v: (y_at - v) ** 2
    steps_weight = weight[1:][at[1]]
    gain = steps_weight * (error(toward_zero) - error(near_at)) + bits(toward_zero) - bits(near_at)
    moved = gain < 0
    near[tuple(i[moved] for i in at)] = toward_zero[moved]
    return q


def adaptation(tables: CodingTables, code: np.ndarray) -> np.ndarray:
    """The per-channel table moves (C - 1,) in [-ADAPT_RANGE, ADAPT_RANGE] that code this
    integer code (C, H, W) in the fewest bits, the moves' own bits under their prior included
    (a shortest path over the channels), or none at all (zeros: the flag alone) where moving
    does not pay; encoder side only. A move of +1 takes every table of the channel one grid
    step narrower, as `CodingTables.shifted` does."""
    return cheapest_moves(tables, coded_after_dc(tables, code), code.shape[0])


def cheapest_moves(tables: CodingTables, chunks, c_total: int) -> np.ndarray:
    """`adaptation`, from the chunks of `stream.coded_after_dc` (C - 1 channels after the DC)."""
    if c_total == 1:
        return np.zeros(0, np.int64)
    moves = np.arange(-ADAPT_RANGE, ADAPT_RANGE + 1)
    under = [tables.moved_index(tables.shift[:, None] + m) for m in moves]  # the tables under each move
    bits = np.zeros((c_total - 1, len(moves)))  # each channel's bits under each move
    for lo, hi, ctx, values in chunks:
        # count each (channel, context, symbol) of the chunk, then its bits under every move
        channel = np.arange(lo - 1, hi - 1).reshape(-1, 1)
        key = (channel * CONTEXTS + ctx) * (2 * AC_CLAMP + 1) + values + AC_CLAMP
        key, count = np.unique(key, return_counts=True)
        pair, symbol = np.divmod(key, 2 * AC_CLAMP + 1)
        channel, context = np.divmod(pair, CONTEXTS)
        for j, index in enumerate(under):
            bits[:, j] += np.bincount(channel, count * tables.bits(index[channel, context], symbol - AC_CLAMP),
                                      minlength=c_total - 1)
    step = DIFFERENCE_BITS[moves[None, :] - moves[:, None] + 2 * ADAPT_RANGE]  # [from, to]
    total, back = bits[0] + DIFFERENCE_BITS[moves + 2 * ADAPT_RANGE], []
    for c in range(1, c_total - 1):
        via = total[:, None] + step
        back.append(via.argmin(0))
        total = via.min(0) + bits[c]
    if total.min() >= bits[:, ADAPT_RANGE].sum():  # unmoved, without the moves' bits
        return np.zeros(c_total - 1, np.int64)
    path = [int(total.argmin())]
    for came_from in reversed(back):
        path.append(int(came_from[path[-1]]))
    return moves[path[::-1]]
