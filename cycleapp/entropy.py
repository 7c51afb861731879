"""Entropy model of the code and the real entropy coder.

What is coded is not the integer code itself but its symbols: for each channel, the code minus an
integer prediction from the decoded neighbours in the same channel (PREDICTORS: none, the left
value, the one above, the planar left + up - up-left of lossless image coders, or the median edge
detector of LOCO-I / JPEG-LS, "med": planar, except that next to an edge, where the up-left value
lies outside the range of the left and upper ones, it takes the one of those on the far side of the
edge). Channel 0, the DC of each 16x16 block, uses planar or med, and its residual is coded with one of
DC_CONTEXTS learned factorised densities (Balle et al. 2018, appendix 6.1), chosen by the summed
magnitudes of the three residuals above it (`dc_contexts`): on clean photographs a smooth sky's
residuals are near zero and an edge's are not, and a density per context saves a ninth of the
DC's bits on modern photographs. The decoder gets the DC a row at a time, each row's contexts known
from the one above. The other channels' predictors are chosen per channel from the data
(`choose_predictors`): on clean photographs the chroma DCs of the blocks are as smooth as the luma
DC, and coding their differences saves a fifth of their bits.
The decoder gets every symbol first, then undoes the prediction: cumulative sums for the linear
predictors, and for med one anti-diagonal of positions at a time (each reads only positions on the
diagonals before it).

Every channel after the DC uses a zero-mean density whose table depends on an integer context with
two parts, both read from symbols the decoder already has:
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
four passes instead of two another 0.1 to 1.3 % of the bits after the DC (README, "Results").
Contexts are computed with integer arithmetic only, so the encoder and the decoder pick the same
table on any machine, and each pass decodes in parallel.

For coding, the learned scales are snapped to a fixed grid of SCALES log-spaced values, and each
(channel, context) stores the index of its table: a generalised Gaussian of one of SHAPES at that
scale (`ac_tables`). Training fits Laplace scales (shape 1) to the continuous code plus noise;
`train.calibrate` then chooses each (channel, context)'s shape and scale on the real integer codes
of the training photos, whose peak at zero is sharper and whose tails are heavier than a Laplace's
(README, "The model"). The tables are computed once, at checkpoint export, and stored with the
weights (the AC tables once for all code sizes, `checkpoint.SHARED_TABLES`); the encoder and the
decoder hand exactly those numbers to `constriction`, so encode and decode never recompute them
differently.

Those tables fit the training photos on average; one photo's channels are often sparser or busier
(a grey photo's chroma, a smooth one's textures). So the encoder adapts them per image: it moves
every channel's tables (all its contexts together, each keeping its shape) by a whole number of
grid steps of scale, the one that codes that channel in the fewest bits, and writes the moves at the
head of the stream: a flag, then, if it is set, each move as the difference from the previous
channel's, under a fixed prior that makes equal moves cheap (`adaptation`; the moves cost 1.5 to 2
bits a channel and make the files 4 to 7 % smaller on Kodak and the dev photos; where they would
not pay, as on a small image, the flag alone is written). The decoder reads the moves first, so the
tables of every symbol are known before it.

The stream is one constriction ANS stack started from a "seal" (a state in [2^32, 2^33) that the
container derives from its header) instead of an empty coder: the decoder must consume the payload
exactly, ending in that very state, so a payload that runs dry, one with data left over, or one
under a header it was not written for is refused rather than decoded to some image. Memory stays
bounded: the coder keeps int16 symbols and the weighted magnitude sums below each group, and
computes the contexts a chunk of channels at a time.
"""
from __future__ import annotations

import copy
import functools
import math

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOOD_FLOOR = 1e-9
GROUP_EDGES = (1, 8, 16, 32, 64, 96, 128, 160, 192, 224, 256, 320)  # channel groups, decoded in order
ACTIVITY_BUCKETS = 16  # floor(log2(1 + activity / ACTIVITY_UNIT)), capped
ACTIVITY_UNIT = 16  # activity weights are about 64 / mean magnitude: a context counts 4 / mean magnitude
ACTIVITY_WEIGHT_MAX = 4096  # a channel that is almost never non-zero
PASS_OFFSETS = ((0, 0), (1, 1), (0, 1), (1, 0))  # (row, column) parities of each pass's positions
PASSES = len(PASS_OFFSETS)  # a channel group's positions, decoded a phase of the 2x2 pattern at a time
NEIGHBOUR_STATES = 16  # the first pass, then buckets of the decoded neighbours' magnitudes: 4, 5 and 6 in passes 1-3
CONTEXTS = ACTIVITY_BUCKETS * NEIGHBOUR_STATES
DC_CONTEXTS = 6  # floor(log2(1 + the three DC residual magnitudes above)), capped
DC_CLAMP = 1024  # the DC is clipped to [-DC_CLAMP, DC_CLAMP], so its residual fits 4 * DC_CLAMP
AC_CLAMP = 512  # every other channel is clipped to [-AC_CLAMP, AC_CLAMP]
SCALES = 64  # scales of the coding tables, log-spaced in [SCALE_MIN, SCALE_MAX]
SCALE_MIN, SCALE_MAX = 0.05, 128.0
SHAPES = (0.55, 0.7, 0.85, 1.0)  # exponents of the generalised Gaussian tables: 1 is the Laplace
LAPLACE = SHAPES.index(1.0)  # the shape training fits (`EntropyModel.likelihood`)
TABLES = SCALES * len(SHAPES)  # table index = shape * SCALES + scale
GRID_RATIO = (SCALE_MAX / SCALE_MIN) ** (1 / (SCALES - 1))  # from one table's scale to the next
PRECISION = 24  # constriction's Categorical models: probabilities in units of 2^-24
DEFAULT_SEAL = 1 << 32  # the coder's initial state when the caller has no header to bind it to
CHUNK = 16  # channels whose symbols the coder sorts by table together
ADAPT_RANGE = 8  # per image, each channel's tables may move this many grid steps either way
ADAPT_RATIO = 2.0  # the prior of a channel's move relative to the one before: P(d) ~ 2 ** -|d|


def bucket(x: torch.Tensor, buckets: int) -> torch.Tensor:
    """min(floor(log2(1 + x)), buckets - 1) for integer x >= 0, in integers: a lookup in a table of
    the values up to 2 ** (buckets - 1) - 1, the first in the last bucket (one pass over x)."""
    return _bucket_table(buckets).to(x.device)[x.clamp(max=2 ** (buckets - 1) - 1).long()]


@functools.cache
def _bucket_table(buckets: int) -> torch.Tensor:
    return torch.tensor([(v + 1).bit_length() - 1 for v in range(2 ** (buckets - 1))])


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


def neighbour_state(own: torch.Tensor) -> torch.Tensor:
    """Each channel's own part of its contexts (B, C, H, W) from its integer magnitudes (B, C, H, W),
    read only where the group's earlier passes (`phases`) have decoded them: 0 in the first pass;
    in the second, 1 + a bucket (of 4) of the four diagonal neighbours' summed magnitudes; in the
    third, 5 + a bucket (of 5) of the four direct ones'; in the fourth, 10 + a bucket (of 6) of
    the direct ones' plus half the diagonal ones'."""
    out = torch.zeros_like(own)
    for k in range(1, PASSES):
        out[(..., *in_pass(k))] = pass_state(own, k)
    return out


def pass_state(own: torch.Tensor, k: int) -> torch.Tensor:
    """`neighbour_state` at the positions of pass k >= 1 alone ((B, C) + that pass's grid), from the
    channels' integer magnitudes (B, C, H, W): the work of one pass, for the coder."""
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
        out[:, start:end] = activity_context(lower)[:, None] + neighbour_state(mag[:, start:end])
        lower = lower + weighted_sum(mag[:, start:end], weights[start:end])
    return out


def activity_weights(symbols: torch.Tensor) -> torch.Tensor:
    """Each channel's activity weight from a sample of integer symbols (B, C, H, W): about 64 over
    its mean magnitude, so that every channel counts alike in a context's activity; int64 (C,)."""
    mean = symbols.abs().double().mean((0, 2, 3))
    return (64 / mean.clamp_min(64 / ACTIVITY_WEIGHT_MAX)).round().clamp(1, ACTIVITY_WEIGHT_MAX).to(torch.int64)


def laplace_likelihood(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(Y in [y - 1/2, y + 1/2]) for a zero-mean Laplace of the given scale (symmetric form)."""
    v = -y.abs()
    upper, lower = (v + 0.5) / scale, (v - 0.5) / scale
    cdf_upper = torch.where(upper <= 0, 0.5 * torch.exp(upper.clamp(max=0)), 1 - 0.5 * torch.exp(-upper.clamp(min=0)))
    p = cdf_upper - 0.5 * torch.exp(lower)
    return p.clamp_min(LIKELIHOOD_FLOOR)


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
    let the bit counts (`CodingTables.ac_bits`) that RDOQ, the moves and calibration read rate a rare
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


class FactorizedDensity(nn.Module):
    """Per-channel learned cumulative density, filters (1, 3, 3, 3, 1)."""

    def __init__(self, channels: int, filters=(3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """v: (C, 1, N) values -> (C, 1, N) logits of the CDF."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(m), v) + b
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """Probability of each (noisy or integer) value y of shape (B, C, H, W)."""
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.clamp_min(LIKELIHOOD_FLOOR)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def table(self, radius: int) -> torch.Tensor:
        """Probabilities of the integers -radius .. radius under each channel's density, float32
        (channels, 2 * radius + 1)."""
        v = torch.arange(-radius, radius + 1, dtype=torch.float32).view(1, 1, -1)
        pmf = torch.sigmoid(self.logits_cdf(v + 0.5).double()) - torch.sigmoid(self.logits_cdf(v - 0.5).double())
        return pmf.clamp_min(0)[:, 0].float()


class EntropyModel(nn.Module):
    """Context-conditional densities: factorised ones for the DC residual, generalised Gaussians for
    the others (a Laplace in training; `train.calibrate` chooses each one's shape from real codes)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.dc = FactorizedDensity(DC_CONTEXTS)  # one density per DC context
        self.log_scale = nn.Parameter(torch.zeros(channels - 1, CONTEXTS))
        predictor = torch.zeros(channels, dtype=torch.int64)
        predictor[0] = PLANAR
        self.register_buffer("predictor", predictor)  # chosen once per run: choose_predictors
        self.register_buffer("activity", torch.ones(channels, dtype=torch.int64))  # and activity_weights
        self.register_buffer("shape_index", torch.full((channels - 1, CONTEXTS), LAPLACE))  # train.calibrate's

    def likelihood(self, y: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Probability of the (noisy or integer) code y; contexts and predictions come from the
        integer code. A predicted channel's symbol is the integer residual, with a straight-through
        gradient; the others are the noisy code itself. The channels after the DC are Laplace
        whatever their tables' shapes: training fits scales, calibration shapes."""
        straight = residuals(code + (y - y.detach()), self.predictor)
        symbols = torch.where(self.predictor.view(1, -1, 1, 1) > 0, straight, y)
        integer = residuals(code, self.predictor)
        every_dc_density = self.dc.likelihood(symbols[:, :1].expand(-1, DC_CONTEXTS, -1, -1))
        p = every_dc_density.gather(1, dc_contexts(integer[:, 0].long())[:, None])
        if self.channels == 1:
            return p
        ctx = contexts(integer, self.activity)[:, 1:]
        rows = torch.arange(self.channels - 1, device=y.device).view(1, -1, 1, 1)
        scale = self.log_scale.exp()[rows, ctx]
        return torch.cat([p, laplace_likelihood(symbols[:, 1:], scale)], dim=1)

    @torch.no_grad()
    def tables(self) -> tuple[torch.Tensor, ...]:
        """Coding tables: the DC residual's probabilities per DC context (DC_CONTEXTS, 8 * DC_CLAMP
        + 1), the tables of the other channels (`ac_tables`), each (channel, context)'s table index
        (its shape's, at its scale's nearest on the grid), each channel's predictor and activity
        weight."""
        grid = scale_grid()
        position = (self.log_scale.double() - grid[0].log()) / (grid[1].log() - grid[0].log())
        index = self.shape_index.cpu() * SCALES + position.round().clamp(0, SCALES - 1).to(torch.int64).cpu()
        return (self.dc.table(4 * DC_CLAMP), ac_tables(), index.to(torch.int16), self.predictor.to(torch.int16).cpu(),
                self.activity.to(torch.int16).cpu())


class CodingTables:
    """The fixed probability tables of one checkpoint, ready for constriction."""

    def __init__(self, dc: torch.Tensor, ac: torch.Tensor, index: torch.Tensor, predictor: torch.Tensor,
                 activity: torch.Tensor):
        if dc.shape != (DC_CONTEXTS, 8 * DC_CLAMP + 1) or ac.shape != (TABLES, 2 * AC_CLAMP + 1) \
                or index.ndim != 2 or index.shape[1] != CONTEXTS or predictor.shape != (index.shape[0] + 1,) \
                or activity.shape != predictor.shape \
                or not ((index >= 0) & (index < TABLES)).all() \
                or not ((predictor >= 0) & (predictor < len(PREDICTORS))).all() \
                or int(predictor[0]) not in DC_PREDICTORS \
                or not ((activity >= 1) & (activity <= ACTIVITY_WEIGHT_MAX)).all():
            raise ValueError("coding tables are inconsistent")
        self.base_index = index.numpy().astype(np.int64)  # (channels - 1, CONTEXTS), as stored
        self.shift = np.zeros(len(self.base_index), np.int64)  # grid steps narrower, per channel
        self.index = self.base_index  # the tables in use: each scale moved by -shift, clipped to the grid
        self.predictor = predictor.to(torch.int64)  # (channels,)
        self.activity = activity.to(torch.int64)  # (channels,)
        self.limits = code_limits(self.predictor).view(1, -1, 1, 1)
        self.dc_probabilities = dc.numpy().astype(np.float64)  # (DC_CONTEXTS, symbols)
        self.ac_probabilities = ac.numpy().astype(np.float64)
        self.ac_bits = -torch.from_numpy(self.ac_probabilities).clamp_min(1e-300).log2()
        self.dc_least_bits = -math.log2(self.dc_probabilities.max())  # of the most probable symbol of any
        self.ac_least_bits = self.ac_bits.min(1).values.numpy()  # (TABLES,)
        self.dc_models = [constriction.stream.model.Categorical(p, perfect=False) for p in self.dc_probabilities]
        self.models = [constriction.stream.model.Categorical(p, perfect=False) for p in self.ac_probabilities]
        differences = np.arange(-2 * ADAPT_RANGE, 2 * ADAPT_RANGE + 1)
        prior = ADAPT_RATIO ** -np.abs(differences).astype(np.float64)
        self.move_model = constriction.stream.model.Categorical(prior / prior.sum(), perfect=False)
        self.difference_bits = -np.log2(prior / prior.sum())  # indexed by difference + 2 * ADAPT_RANGE
        self.flag_model = constriction.stream.model.Categorical(np.array([0.5, 0.5]), perfect=False)

    @property
    def channels(self) -> int:
        return self.index.shape[0] + 1

    def shifted(self, steps) -> "CodingTables":
        """These tables moved `steps` grid steps narrower (clipped to the grid), for a code whose
        steps are GRID_RATIO ** steps times coarser (rate control) or for an image's channels that
        are sparser than the tables expect (`adaptation`). steps: one integer, or one per channel
        after the DC. Moves add up before the clip, so the tables depend on the total move alone
        and a move can undo another that ran into the edge of the grid."""
        steps = np.broadcast_to(np.asarray(steps), self.shift.shape)
        if steps.dtype.kind not in "iu":
            raise ValueError("tables move by whole grid steps")
        if not steps.any():
            return self
        out = copy.copy(self)
        out.shift = self.shift + steps
        out.index = out.moved_index(out.shift[:, None])
        return out

    def moved_index(self, shift) -> np.ndarray:
        """The stored table indices (channels - 1, CONTEXTS) moved `shift` grid steps narrower
        (`moved`, `shift` broadcast against them)."""
        return moved(self.base_index, shift)

    def clamp(self, code: torch.Tensor) -> torch.Tensor:
        """Clip integer code values (B, C, H, W) so that every symbol is within the coded range."""
        return torch.maximum(torch.minimum(code, self.limits), -self.limits)

    def symbols(self, code: torch.Tensor) -> torch.Tensor:
        """What is coded: the prediction residuals of an integer code (B, C, H, W)."""
        return residuals(code.to(torch.int64), self.predictor)

    def contexts(self, symbols: torch.Tensor) -> torch.Tensor:
        """The context of every integer symbol (B, C, H, W), with these tables' activity weights."""
        return contexts(symbols, self.activity)

    def quantize(self, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Rate-distortion optimised rounding of a continuous code y (B, C, H, W), encoder side only.

        Each value of an unpredicted channel after the DC is rounded, then moved one step toward
        zero wherever that saves more bits (under its table, contexts taken from the plain rounding)
        than it costs in weight[c] * (squared error in the code), as classical encoders do (RDOQ /
        trellis). Predicted channels keep the plain rounding (a value there is also its neighbours'
        prediction). The decoder is untouched: it decodes whatever integers it is given.
        """
        q = self.clamp(torch.round(y))
        if q.shape[1] == 1:
            return q
        ctx = self.contexts(self.symbols(q))[:, 1:]
        table = torch.from_numpy(self.index)[torch.arange(q.shape[1] - 1).view(1, -1, 1, 1), ctx]
        near = q[:, 1:]
        # only a non-zero value of an unpredicted channel can move (the others' gain would be 0)
        free = (self.predictor[1:] == 0).view(1, -1, 1, 1)
        at = ((near != 0) & free).nonzero(as_tuple=True)
        near_at, table_at, y_at = near[at], table[at], y[:, 1:][at].double()
        toward_zero = near_at - torch.sign(near_at)
        bits = lambda v: self.ac_bits[table_at, v.to(torch.int64) + AC_CLAMP]
        error = lambda v: (y_at - v) ** 2
        steps_weight = weight[1:][at[1]]
        gain = steps_weight * (error(toward_zero) - error(near_at)) + bits(toward_zero) - bits(near_at)
        moved = gain < 0
        near[tuple(i[moved] for i in at)] = toward_zero[moved]
        return q

    def payload_bits(self, shape: tuple[int, int, int]) -> tuple[float, int]:
        """Bounds on the payload bits of any code of this shape (C, H, W), from the tables alone.

        At least: every symbol costs at least -log2 of the highest probability in any table it may
        be coded with (its channel's narrowest table over all contexts and table moves); half of
        that sum, a wide margin for constriction's rounding of the probabilities. At most: PRECISION
        bits a symbol, the moves included (no probability is below 2^-PRECISION), plus one, plus the
        sealed coder's two words."""
        c, h, w = shape
        # whatever moves the stream holds (a narrower table's likeliest symbol costs fewer bits)
        narrowest = self.shifted(ADAPT_RANGE).index
        per_position = self.dc_least_bits + self.ac_least_bits[narrowest].min(1).sum()
        return 0.5 * h * w * per_position, (PRECISION + 1) * (c * h * w + c + 1) + 64

    def _symbols(self, code: np.ndarray, start: int, end: int) -> np.ndarray:
        """The symbols of channels [start, end) of an integer code (C, H, W), as int16, a few channels
        at a time so that the temporaries stay small; ValueError if one is outside the tables."""
        out = np.empty((end - start, *code.shape[1:]), np.int16)
        for lo in range(start, end, 8):
            hi = min(lo + 8, end)
            part = torch.from_numpy(np.asarray(code[lo:hi], dtype=np.int32))[None]
            symbols = residuals(part, self.predictor[lo:hi])[0].numpy()
            radius = 4 * DC_CLAMP if lo == 0 else AC_CLAMP
            if symbols.size and np.abs(symbols).max() > radius:
                raise ValueError("code outside the coding tables' range (clamp it first)")
            out[lo - start:hi - start] = symbols
        return out

    def _batches(self, ctx: np.ndarray, start: int, end: int):
        """Split the symbols of channels [start, end) at some positions into runs that share a table
        (`_runs`). ctx: their contexts there (end - start, positions)."""
        rows = np.arange(end - start).reshape(-1, 1)
        return _runs(self.index[start - 1:end - 1].astype(np.int16)[rows, ctx].ravel())

    def _order(self, c_total: int):
        """The coding order after the DC, as (group [start, end), passes): each channel group's
        PASSES passes over its positions (`phases`), each as (pass k, chunks): CHUNK channels at a
        time (each chunk's symbols in runs of one table, `_batches`: few calls to constriction,
        bounded temporaries)."""
        for start, end in groups(c_total):
            yield start, end, [(k, [(lo, min(lo + CHUNK, end)) for lo in range(start, end, CHUNK)])
                               for k in range(PASSES)]

    def _weighted(self, symbols: np.ndarray, start: int) -> np.ndarray:
        """The activity-weighted magnitudes of the symbols of channels start, start + 1, ... (C, H, W),
        summed over the channels: int64 (H, W)."""
        return _weighted_sum(symbols, self.activity[start:start + len(symbols)])

    def _coded_after_dc(self, code: np.ndarray):
        """The symbols after the DC in the order the stack codes them, the reverse of the decoding
        order (`_order`): (lo, hi, ctx, values) per chunk of channels [lo, hi) and pass, with the
        chunk's contexts and symbols there (hi - lo, positions) each. The groups are visited from
        the last, each with the weighted magnitudes summed over the channels below it."""
        c_total = code.shape[0]
        below = [self._weighted(self._symbols(code, 0, 1), 0)]  # summed below each group
        for start, end in groups(c_total)[:-1]:
            below.append(below[-1] + self._weighted(self._symbols(code, start, end), start))
        for (start, end, passes), lower in reversed(list(zip(self._order(c_total), below))):
            symbols = self._symbols(code, start, end)
            shared = _activity_context(lower)
            for phase, chunks in reversed(passes):
                for lo, hi in reversed(chunks):
                    # the channel's own magnitudes are read only where an earlier pass decoded them
                    ctx = _contexts(shared, symbols[lo - start:hi - start], phase)
                    yield lo, hi, ctx, symbols[(slice(lo - start, hi - start), *in_pass(phase))].reshape(hi - lo, -1)

    def adaptation(self, code: np.ndarray) -> np.ndarray:
        """The per-channel table moves (C - 1,) in [-ADAPT_RANGE, ADAPT_RANGE] that code this
        integer code (C, H, W) in the fewest bits, the moves' own bits under their prior included
        (a shortest path over the channels), or none at all (zeros: the flag alone) where moving
        does not pay; encoder side only. A move of +1 takes every table of the channel one grid
        step narrower, as `shifted` does."""
        return self._cheapest_moves(self._coded_after_dc(code), code.shape[0])

    def _cheapest_moves(self, chunks, c_total: int) -> np.ndarray:
        """`adaptation`, from the chunks of `_coded_after_dc` (C - 1 channels after the DC)."""
        if c_total == 1:
            return np.zeros(0, np.int64)
        moves = np.arange(-ADAPT_RANGE, ADAPT_RANGE + 1)
        table_bits = self.ac_bits.numpy()
        tables = [self.moved_index(self.shift[:, None] + m) for m in moves]  # under each move
        bits = np.zeros((c_total - 1, len(moves)))  # each channel's bits under each move
        for lo, hi, ctx, values in chunks:
            # count each (channel, context, symbol) of the chunk, then its bits under every move
            channel = np.arange(lo - 1, hi - 1).reshape(-1, 1)
            key = (channel * CONTEXTS + ctx) * (2 * AC_CLAMP + 1) + values + AC_CLAMP
            key, count = np.unique(key, return_counts=True)
            pair, symbol = np.divmod(key, 2 * AC_CLAMP + 1)
            channel, context = np.divmod(pair, CONTEXTS)
            for j, index in enumerate(tables):
                bits[:, j] += np.bincount(channel, count * table_bits[index[channel, context], symbol],
                                          minlength=c_total - 1)
        step = self.difference_bits[moves[None, :] - moves[:, None] + 2 * ADAPT_RANGE]  # [from, to]
        total, back = bits[0] + self.difference_bits[moves + 2 * ADAPT_RANGE], []
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

    def moves_bits(self, moves: np.ndarray) -> float:
        """What the moves cost at the head of the stream: the flag, then their differences."""
        return 1.0 + (float(self.difference_bits[_move_symbols(moves)].sum()) if moves.any() else 0.0)

    def encode(self, code: np.ndarray, seal: int = DEFAULT_SEAL, adaptation: np.ndarray | None = None) -> bytes:
        """code: int array (C, H, W), already clamped -> compressed bytes.

        The coder starts from the state `seal` (see `decode`). The stream decodes as: the table
        moves (`adaptation`, chosen here unless given), the DC a row at a time, then the channel
        groups (`_order`); a stack codes them in reverse."""
        c_total, h, w = code.shape
        chunks = list(self._coded_after_dc(code))  # the same symbols and contexts under any moves
        moves = self._cheapest_moves(chunks, c_total) if adaptation is None else np.asarray(adaptation)
        whole = moves.dtype.kind in "iu"
        if moves.shape != (c_total - 1,) or not whole or np.abs(moves).max(initial=0) > ADAPT_RANGE:
            raise ValueError(f"an adaptation is {c_total - 1} table moves within +-{ADAPT_RANGE}")
        tables = self.shifted(moves)
        coder = constriction.stream.stack.AnsCoder(_words(seal))
        for lo, hi, ctx, values in chunks:
            values = values.ravel().astype(np.int32) + AC_CLAMP
            for k, positions in reversed(list(tables._batches(ctx, lo, hi))):
                coder.encode_reverse(values[positions], self.models[k])
        dc = self._symbols(code, 0, 1)[0]
        dc_ctx = dc_contexts(torch.from_numpy(dc.astype(np.int64))).numpy()
        for row in reversed(range(h)):
            values = dc[row].astype(np.int32) + 4 * DC_CLAMP
            for k, positions in reversed(list(_runs(dc_ctx[row]))):
                coder.encode_reverse(values[positions], self.dc_models[k])
        if moves.any():
            coder.encode_reverse(_move_symbols(moves), self.move_model)
        coder.encode_reverse(np.array([int(moves.any())], np.int32), self.flag_model)
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload, shape: tuple[int, int, int], seal: int | None = None) -> np.ndarray:
        """Inverse of encode: the int16 code (C, H, W) of a payload (bytes or a buffer).

        Raises ValueError unless the payload is exactly the encoding of a code within the tables'
        range and its table moves within ADAPT_RANGE: its size within `payload_bits` (a loose
        bound), checked before anything is allocated;
        holding the whole DC, checked before more than the DC's plane is allocated, so that a header
        that lies about the size over a small payload is refused early even where the bound lets it
        pass; never running dry (in a sealed stream the coder's state never drops below 2^32, and
        once it has, it never climbs back); ending in exactly the `seal` the encoder started from,
        nothing left (None: any seal, for a reader without the header)."""
        c_total, h, w = shape
        if c_total != self.channels:
            raise ValueError(f"code has {c_total} channels, the tables {self.channels}")
        if len(payload) % 4:
            raise ValueError("payload length is not a multiple of 4")
        least, most = self.payload_bits(shape)
        if not least <= 8 * len(payload) <= most:
            raise ValueError(f"a payload of {len(payload)} bytes cannot hold a {c_total}x{h}x{w} code "
                             f"({math.ceil(least / 8)} to {most // 8} bytes)")
        # a copy: the payload sits at an odd offset in the file, and constriction needs aligned words
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        if len(words) < 2 or words[-1] == 0:
            raise ValueError("payload does not end in a coder state")
        coder = constriction.stream.stack.AnsCoder(words)
        moves = np.zeros(c_total - 1, np.int64)
        if coder.decode(self.flag_model, 1)[0]:
            moves = np.cumsum(coder.decode(self.move_model, c_total - 1).astype(np.int64) - 2 * ADAPT_RANGE)
        _check_not_dry(coder)  # moves read past the data are no moves at all
        if np.abs(moves).max(initial=0) > ADAPT_RANGE:
            raise ValueError("payload moves a channel's tables out of range")
        tables = self.shifted(moves)
        dc = np.zeros((h, w), np.int16)
        for row in range(h):  # the DC a row at a time: its contexts read the row above
            ctx = dc_contexts(torch.from_numpy(dc[max(row - 1, 0):row + 1].astype(np.int64)))[-1].numpy()
            for k, positions in _runs(ctx):
                dc[row, positions] = coder.decode(self.dc_models[k], len(positions)) - 4 * DC_CLAMP
        _check_not_dry(coder)  # a payload too small for the DC alone ends here, before the whole code exists
        symbols = np.zeros((c_total, h, w), np.int16)  # then the code, in place
        symbols[0] = dc
        lower = self._weighted(dc[None], 0)
        del dc
        for start, end, passes in self._order(c_total):
            shared = _activity_context(lower)
            for phase, chunks in passes:
                for lo, hi in chunks:  # the first pass's contexts read no symbol of the group, the others' earlier passes
                    ctx = _contexts(shared, symbols[lo:hi], phase)
                    values = np.empty((hi - lo) * ctx.shape[1], np.int16)
                    for k, positions in tables._batches(ctx, lo, hi):
                        decoded = coder.decode(self.models[k], len(positions))
                        decoded -= AC_CLAMP
                        values[positions] = decoded
                    target = symbols[(slice(lo, hi), *in_pass(phase))]
                    target[...] = values.reshape(target.shape)
                _check_not_dry(coder)
            lower += self._weighted(symbols[start:end], start)
        if coder.num_words() != 2:
            raise ValueError("payload has data left after the last symbol")
        low, high = (int(word) for word in coder.get_compressed())
        if not (low | high << 32 == seal if seal is not None else high == 1):
            raise ValueError("payload does not end where its encoder began (data left over, or "
                             "a header it was not written for)")
        return self._to_code(symbols)

    def _to_code(self, symbols: np.ndarray) -> np.ndarray:
        """Undo the prediction in place, a channel at a time; ValueError for a value outside the
        range every encoder clamps to."""
        predictor, limits = self.predictor.numpy(), self.limits.view(-1).numpy()
        for c in range(len(symbols)):
            plane = from_residuals(symbols[c:c + 1].astype(np.int64), predictor[c:c + 1])[0]
            if plane.size and np.abs(plane).max() > limits[c]:
                raise ValueError("decoded code outside the range any encoder writes")
            symbols[c] = plane
        return symbols


def _move_symbols(moves: np.ndarray) -> np.ndarray:
    """The symbols of table moves in the stream: each move's difference from the previous one's."""
    return np.diff(moves, prepend=0).astype(np.int32) + 2 * ADAPT_RANGE


def _runs(table: np.ndarray):
    """Positions of a flat array of table indices grouped into runs that share a table: (table,
    positions), tables in increasing order, positions in order within each (one constriction call
    per run)."""
    order = np.argsort(table, kind="stable")
    counts = np.bincount(table)
    ends = np.cumsum(counts)
    for k in np.flatnonzero(counts):
        yield int(k), order[ends[k] - counts[k]:ends[k]]


def _weighted_sum(symbols: np.ndarray, weights: torch.Tensor) -> np.ndarray:
    """`weighted_sum` of integer numpy symbols (C, H, W): int64 (H, W)."""
    return weighted_sum(torch.from_numpy(np.abs(symbols.astype(np.int64)))[None], weights)[0].numpy()


def _activity_context(lower: np.ndarray) -> np.ndarray:
    """`activity_context` of a numpy weighted sum (H, W)."""
    return activity_context(torch.from_numpy(lower)[None])[0].numpy()


def _contexts(shared: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """The contexts of a chunk of channels at the positions of pass k, from their group's
    `_activity_context` (H, W) and their symbols (C, H, W): (1, positions) in the first pass,
    where the channels' contexts are the same, (C, positions) in the others."""
    base = shared[in_pass(k)].reshape(1, -1)
    if k == 0:
        return base
    state = pass_state(torch.from_numpy(np.abs(own.astype(np.int32)))[None], k)[0].numpy()
    return base + state.reshape(len(own), -1)


def _words(seal: int) -> np.ndarray:
    """A coder state in [2^32, 2^64) as the two words constriction reads it from (low, high)."""
    return np.array([seal & 0xFFFFFFFF, seal >> 32], dtype=np.uint32)


def _check_not_dry(coder) -> None:
    """In a stream sealed with a state >= 2^32 the state stays >= 2^32 while there are symbols to
    decode; once the data runs out it falls below and stays there (constriction keeps decoding)."""
    if coder.num_valid_bits() < 32:
        raise ValueError("payload ran out before the last symbol")
