"""The context rule: which table codes each symbol, read from symbols the decoder already has.

Channel 0, the DC residual, is coded under one of DC_CONTEXTS densities chosen by the summed
magnitudes of the three residuals above it (`dc_contexts`): on clean photographs a smooth sky's
residuals are near zero and an edge's are not, and a density per context saves a ninth of the DC's
bits on modern photographs. The decoder gets the DC a row at a time, each row's contexts known from
the one above.

Every channel after the DC is coded under a table chosen by an integer context with two parts:
- activity: a bucket of the magnitudes of the lower channel groups in the 3x3 neighbourhood, each
  channel's weighted by its integer activity weight, about 64 over its mean magnitude (chosen once
  per training run, `activity_weights`): a busy block shows in every channel, and without the
  weights the few large low channels (the DC residual, the first gradients) would drown the others;
- neighbours: each channel group is decoded in four passes over a 2x2 pattern of positions
  (`phases`, a finer checkerboard than He et al. 2021's two): (even row, even column) first, then
  (odd, odd), whose context counts the channel's own magnitudes at its four diagonal neighbours,
  then (even, odd), which counts its four direct neighbours, then (odd, even), which counts all
  eight. Three quarters of the positions see decoded neighbours of their own channel, not half.
Compared with format 5's contexts (the group's summed magnitudes at the neighbours, unweighted
activity), the channel's own neighbours and the weighted activity make the files 2 to 3 % smaller;
four passes instead of two another 0.1 to 1.3 % of the bits after the DC.

The rule is written once, in integer torch arithmetic, so that the encoder and the decoder pick the
same table on any machine: training and calibration call `contexts` on whole batches, the coder
(`stream`) calls `pass_contexts` on torch views of its numpy arrays, a chunk of channels and one
pass at a time (each pass decodes in parallel); both come down to `activity_context` and `pass_state`.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

GROUP_EDGES = (1, 8, 16, 32, 64, 96, 128, 160, 192, 224, 256, 320)  # channel groups, decoded in order
ACTIVITY_BUCKETS = 16  # floor(log2(1 + activity / ACTIVITY_UNIT)), capped
ACTIVITY_UNIT = 16  # activity weights are about 64 / mean magnitude: a context counts 4 / mean magnitude
ACTIVITY_WEIGHT_MAX = 4096  # a channel that is almost never non-zero
PASS_OFFSETS = ((0, 0), (1, 1), (0, 1), (1, 0))  # (row, column) parities of each pass's positions
PASSES = len(PASS_OFFSETS)  # a channel group's positions, decoded a phase of the 2x2 pattern at a time
NEIGHBOUR_STATES = 16  # the first pass, then buckets of the decoded neighbours' magnitudes: 4, 5 and 6 in passes 1-3
CONTEXTS = ACTIVITY_BUCKETS * NEIGHBOUR_STATES
DC_CONTEXTS = 6  # floor(log2(1 + the three DC residual magnitudes above)), capped


def bucket(x: torch.Tensor, buckets: int) -> torch.Tensor:
    """min(floor(log2(1 + x)), buckets - 1) for integer x >= 0, in integers: a lookup in a table of
    the values up to 2 ** (buckets - 1) - 1, the first in the last bucket (one pass over x)."""
    return _bucket_table(buckets).to(x.device)[x.clamp(max=2 ** (buckets - 1) - 1).long()]


@functools.cache
def _bucket_table(buckets: int) -> torch.Tensor:
    return torch.tensor([(v + 1).bit_length() - 1 for v in range(2 ** (buckets - 1))])


def phases(h: int, w: int, device=None) -> torch.Tensor:
    """The pass (0 to PASSES - 1) in which a group decodes each position (h, w): (even row, even
    column), then (odd, odd), then (even, odd), then (odd, even) (PASS_OFFSETS). Pass 1's diagonal
    neighbours are pass 0's positions, pass 2's direct ones are passes 0 and 1's, and all eight of
    pass 3's are decoded before it."""
    out = torch.empty((h, w), dtype=torch.int64, device=device)
    for k in range(PASSES):
        out[in_pass(k)] = k
    return out


def in_pass(k: int) -> tuple[slice, slice]:
    """The positions of pass k as the last two indices of an array (a strided view, row-major in
    the order the pass codes them)."""
    i0, j0 = PASS_OFFSETS[k]
    return slice(i0, None, 2), slice(j0, None, 2)


def groups(channels: int) -> list[tuple[int, int]]:
    """[start, end) of every channel group after the DC, in decoding order."""
    edges = [e for e in GROUP_EDGES if e < channels] + [channels]
    return list(zip(edges, edges[1:]))


def weighted_sum(mag: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Integer magnitudes (B, C, H, W) summed over the channels with their activity weights (C,)."""
    return (mag * weights.to(mag.device).view(1, -1, 1, 1)).sum(1)


def activity_context(lower: torch.Tensor) -> torch.Tensor:
    """The part of a group's contexts that its channels share (B, H, W): the activity bucket, times
    NEIGHBOUR_STATES, of the weighted magnitudes below the group (`weighted_sum`, integer (B, H, W))
    summed over the 3x3 neighbourhood."""
    h, w = lower.shape[-2:]
    lower = F.pad(lower, (1, 1, 1, 1))
    around = sum(lower[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
    return bucket(around // ACTIVITY_UNIT, ACTIVITY_BUCKETS) * NEIGHBOUR_STATES


def pass_state(own: torch.Tensor, k: int) -> torch.Tensor:
    """A channel's own part of its contexts at the positions of pass k >= 1 ((B, C) + that pass's
    grid), from the channels' integer magnitudes (B, C, H, W), read only where the group's earlier
    passes (`phases`) have decoded them: in the second pass, 1 + a bucket (of 4) of the four
    diagonal neighbours' summed magnitudes; in the third, 5 + a bucket (of 5) of the four direct
    ones'; in the fourth, 10 + a bucket (of 6) of the direct ones' plus half the diagonal ones'.
    (The first pass, which reads none, is state 0.)"""
    i0, j0 = PASS_OFFSETS[k]
    h, w = own.shape[-2:]
    rows, cols = len(range(i0, h, 2)), len(range(j0, w, 2))
    own = F.pad(own, (1, 1, 1, 1))
    at = lambda di, dj: own[..., i0 + di:i0 + di + 2 * rows - 1:2, j0 + dj:j0 + dj + 2 * cols - 1:2]
    diagonal = lambda: at(0, 0) + at(0, 2) + at(2, 0) + at(2, 2)
    cross = lambda: at(0, 1) + at(2, 1) + at(1, 0) + at(1, 2)
    if k == 1:
        return 1 + bucket(diagonal(), 4)
    return 5 + bucket(cross(), 5) if k == 2 else 10 + bucket(cross() + diagonal() // 2, 6)


def pass_contexts(shared: torch.Tensor, own: torch.Tensor, k: int) -> torch.Tensor:
    """The contexts of some channels of one group at the positions of pass k: the group's
    `activity_context` shared (B, H, W) plus each channel's `pass_state` from its integer
    magnitudes own (B, C, H, W). (B, C) + the pass's grid, or (B, 1) + the grid in the first pass,
    where the channels' contexts are the same."""
    base = shared[(slice(None), None, *in_pass(k))]
    return base if k == 0 else base + pass_state(own, k)


def dc_contexts(dc: torch.Tensor) -> torch.Tensor:
    """Context of every DC residual of integer (..., H, W) residuals: a bucket of the summed
    magnitudes of the three above it (up-left, up, up-right; zeros outside), so row r's contexts
    read row r - 1 only and a decoder knows them once it has the row above."""
    h, w = dc.shape[-2:]
    above = F.pad(dc.abs(), (1, 1, 1, 0))
    return bucket(above[..., :h, :w] + above[..., :h, 1:w + 1] + above[..., :h, 2:], DC_CONTEXTS)


def contexts(symbols: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Context of every integer symbol (B, C, H, W) -> int64 (B, C, H, W); 0 for the DC. weights:
    the channels' activity weights (C,)."""
    mag = symbols.to(torch.int64).abs()
    out = torch.zeros_like(mag)
    lower = weighted_sum(mag[:, :1], weights[:1])  # below the first group: the DC
    for start, end in groups(symbols.shape[1]):
        shared = activity_context(lower)
        for k in range(PASSES):
            out[(slice(None), slice(start, end), *in_pass(k))] = pass_contexts(shared, mag[:, start:end], k)
        lower = lower + weighted_sum(mag[:, start:end], weights[start:end])
    return out


def activity_weights(symbols: torch.Tensor) -> torch.Tensor:
    """Each channel's activity weight from a sample of integer symbols (B, C, H, W): about 64 over
    its mean magnitude, so that every channel counts alike in a context's activity; int64 (C,)."""
    mean = symbols.abs().double().mean((0, 2, 3))
    return (64 / mean.clamp_min(64 / ACTIVITY_WEIGHT_MAX)).round().clamp(1, ACTIVITY_WEIGHT_MAX).to(torch.int64)
