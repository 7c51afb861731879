"""The predicted pixel layer (format 10, layer kind 3; format 12, kind 6: the same layer with no
learned code beneath it): lossless and near-lossless files, by coarse-to-fine interpolation with
per-image least-squares predictors (the interface of `residual`).

Why. Over the learned base, `residual` (kind 1, format 9) spent about 11 bpp on Kodak where WebP
lossless spends 9.6: its coarsest grid is coded without prediction, its predictor is a fixed mean of
four neighbours, and red and blue borrow green's innovation through one gain. Measured, the learned
base barely helps a lossless file (kodim01: a flat base of 128 costs 11.85 bpp in all with
`residual`, the `huge` base 1.37 + 10.98; with this layer the flat base wins: 8.90 against 9.15 bpp
on kodim01-03), so this layer stands on its own. Its format 10 files carried the cheapest base there
is (the smallest code size at its coarsest steps: 0.01 bpp); from format 12 on they carry none (a
flat base of 128, `codec.PREDICTED_ALONE`): 0.1 to 1.3 % smaller on average, a third faster.

Order. The image is coded coarse to fine: a grid of every S-th row and column (S = 2^levels, at
most 64 and at most half the image's shorter side), then per level the centres of the known grid's
squares (pass C), the middles of its horizontal edges (E1), then of its vertical edges (E2), each
pass decoded at once for all its positions. Within a pass the channels come green, red, blue, so
that red sees green's value at the very pixel, and blue green's and red's.

Prediction. Every position is predicted from its known neighbours in its own channel (4 nearest,
and 8 to 12 more in passes of at least FULL_FROM positions), two edge-directed interpolations of the
4 nearest (`directional`), the same in the channels coded before it plus their value at the pixel
(the colour transform, learned per image), and the base at the pixel, as an integer linear
combination: pred = ref + (sum_k w_k f_k + 2^(SHIFT-1)) >> SHIFT, where ref is the rounded mean of
the 4 nearest neighbours and f_k are integer differences (neighbour - ref, ...) and a constant. The
weights are integers the encoder fits per (pass, channel) by reweighted least squares (towards
least absolute errors, closer to the bits) and writes in the stream; in passes of at least
CLASS_FROM positions it may fit CLASSES sets and give each 32x32 tile the set that predicts it best
(a flag says whether it did). The decoder does integer arithmetic only (`Features` explains why the
BLAS products it uses are exact): identical pixels on every machine.

Coding. The symbol is the prediction error quantised with the step (as `residual.quantize`: a step
of 2N + 1 keeps every pixel within N), coded with `residual`'s two-sided geometric tables under a
context: a half-octave bucket of an energy, itself an integer linear combination (weights fitted
per pass and channel, written in the stream) of the spread of the 4 nearest neighbours around ref,
the errors already made at the neighbours, the errors of the channels before at the same pixel and
how far the prediction is from ref; per channel and kind of pass. Each context's table is chosen
per image (`residual.choose_tables`). The stream, in decoding order: the tables of the contexts,
then per pass and channel the predictor's flag, weights and tile classes, the energy's weights,
the symbols.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import constriction
import numpy as np
from threadpoolctl import threadpool_limits

from cycleapp.core import strips
from cycleapp.core.entropy import check_not_dry, words
from cycleapp.core.residual import (STEP_UNIT, check_end, choose_tables, dequantize, open_layer, quantize, read_symbols,
                                    read_tables, write_group, write_symbols)

MIN_STEP, MAX_STEP = STEP_UNIT, 255 * STEP_UNIT
ORDER = (1, 0, 2)  # green, red, blue
MAX_LEVELS = 6  # the coarsest grid: every 64th row and column at most
SHIFT = 10  # weights in 1/1024
WEIGHT_RANGE = 1 << 12  # |w| < 4096: a weight within +-4
MAX_FEATURES = 64  # more than any pass has (blue at E2: 55 for the predictor, 7 for the energy)
WEIGHT_BITS = 24  # more than the rarest weight costs under its prior (about 20 bits)
CONST = 64  # the constant feature: a bias up to +-256 in steps of 1/16
FULL_FROM = 4096  # passes with at least this many positions use the wide neighbourhood
GROUPS = 10  # the coarsest grid, then (C, E1, E2) at the finest level, the next, and all coarser
BUCKETS = 22
CONTEXTS = len(ORDER) * GROUPS * BUCKETS
THRESHOLDS = np.array([math.isqrt(1 << k) + (math.isqrt(1 << k) ** 2 < (1 << k)) for k in range(BUCKETS - 1)])

# neighbour offsets in units of half the known grid's spacing, nearest four first
NEAR_C = ((-1, -1), (-1, 1), (1, -1), (1, 1))
FAR_C = ((-1, -3), (-1, 3), (1, -3), (1, 3), (-3, -1), (-3, 1), (3, -1), (3, 1))
NEAR_E = ((0, -1), (0, 1), (-1, 0), (1, 0))
FAR_E1 = ((-2, -1), (-2, 1), (2, -1), (2, 1), (-1, -2), (-1, 2), (1, -2), (1, 2))
FAR_E2 = ((-1, -1), (-1, 1), (1, -1), (1, 1)) + FAR_E1


def levels_of(h: int, w: int) -> int:
    """Levels so that the coarsest spacing is at most half the shorter side (every residue class a
    neighbour falls in then has members) and at most 64."""
    m = min(h, w)
    return max(0, min(MAX_LEVELS, (m // 2).bit_length() - 1)) if m >= 2 else 0


def passes(levels: int):
    """(group, spacing of the known grid, half of it, row offset, column offset, near, far)."""
    s = 1 << levels
    yield 0, s, 0, 0, 0, (), ()
    for level in range(levels):
        h = s // 2
        depth = min(levels - 1 - level, 2)
        yield 1 + 3 * depth, s, h, h, h, NEAR_C, FAR_C
        yield 2 + 3 * depth, s, h, 0, h, NEAR_E, FAR_E1
        yield 3 + 3 * depth, s, h, h, 0, NEAR_E, FAR_E2
        s = h


def _index(start: np.ndarray, d: int, n: int, period: int) -> np.ndarray:
    """Positions start + d within [0, n): reflected about the coded position if outside (the known
    set is symmetric about it), else clamped to the nearest member of the same residue class."""
    out = start + d
    bad = (out < 0) | (out >= n)
    out[bad] = start[bad] - d
    r = out % period
    return r + period * np.clip((out - r) // period, 0, (n - 1 - r) // period)


ENERGY_SHIFT = 4  # energy weights in 1/16; the fitted energy estimates 8 |error|
CLASSES = 4  # predictor classes, chosen per tile, in large passes
CLASS_FROM = 6000
TILE = 32  # pixels a side of the tiles that choose a class


class Features:
    """Integer features of n positions: the columns of a matrix (n, F) that is never made whole
    (a 2K photo's largest pass would be 0.7M x 55 float64 values, written and read again in
    every product: most of the layer's time), only a few thousand rows at a time or the rows a
    fit samples. Products run through BLAS on float64 rows, yet exact: every feature and weight is
    an integer below 2^13 in magnitude and a row has under 64 of them, so every product and
    partial sum is an integer below 2^32, which float64 holds exactly in any order of summation
    (with or without fused multiply-add): the same integers on every machine."""

    CHUNK = 8192  # rows made at a time: (F, CHUNK) float64 stays in the processor's cache

    def __init__(self, columns, n: int):
        self.columns = [np.broadcast_to(f, np.shape(f) if np.ndim(f) == 2 else (n,)).reshape(n) for f in columns]
        self.shape = (n, len(self.columns))

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, index) -> np.ndarray:
        """The matrix's rows at an index (a slice or positions), float64 (rows, F), laid out in
        memory as the fits had them before this class (column by column for a slice, row by row for
        positions): their products are not integers, and BLAS rounds a transposed layout's sums in
        another order, which could move a fitted weight and so change a file."""
        count = len(range(self.shape[0])[index]) if isinstance(index, slice) else len(index)
        out = np.empty((len(self.columns), count))
        for k, f in enumerate(self.columns):
            out[k] = f[index]
        return out.T if isinstance(index, slice) else np.ascontiguousarray(out.T)

    def __matmul__(self, w: np.ndarray) -> np.ndarray:
        """The matrix times integer weights (F,) or (F, m), as int64, exactly: CHUNK rows at a time,
        two at once (`strips.each`; each product exact, so the same in any order)."""
        n, count = self.shape
        wt = np.ascontiguousarray(w.astype(np.float64).T)  # (F,) or (m, F)
        out = np.empty((n,) + w.shape[1:], np.int64)

        def product(rows: slice) -> None:
            x = np.empty((count, rows.stop - rows.start))
            for k, f in enumerate(self.columns):
                x[k] = f[rows]
            out[rows] = (wt @ x).T
        strips.each(n, product, self.CHUNK)
        return out


def correction(X: Features, W, cls, all_classes: bool = False):
    """Each row's (X @ W[its class] + half) >> SHIFT, integers (cls None: one class; all_classes:
    under every class, (n, classes))."""
    if cls is None and not all_classes:
        return (X @ W[0] + (1 << (SHIFT - 1))) >> SHIFT
    every = (X @ W.T + (1 << (SHIFT - 1))) >> SHIFT
    return every if all_classes else every[np.arange(len(X)), cls]


def directional(vals, ref, near):
    """Edge-directed interpolations of the 4 nearest (as differences from 2 ref): the pair of
    opposite neighbours that differ least, and both pairs weighted by the other's difference."""
    (a0, a1), (b0, b1) = ((vals[0], vals[3]), (vals[1], vals[2])) if near is NEAR_C else ((vals[0], vals[1]), (vals[2], vals[3]))
    ga, gb = np.abs(a0 - a1), np.abs(b0 - b1)
    sel = np.where(ga <= gb, a0 + a1, b0 + b1) - 2 * ref
    soft = ((a0 + a1) * gb + (b0 + b1) * ga + (ga + gb) // 2 + 1) // (ga + gb + 1) - 2 * ref
    return [sel, soft]


def bucket(energy: np.ndarray) -> np.ndarray:
    return np.searchsorted(THRESHOLDS, energy, side="right").astype(np.int32)


@functools.cache
def _uniform():
    """The prior of a weight w (stored as w + WEIGHT_RANGE): P(w) ~ 1 / (|w| + WEIGHT_PRIOR)^2, most
    weights being small; from exact fractions, so that every machine builds the same model."""
    w = np.arange(-WEIGHT_RANGE, WEIGHT_RANGE)
    p = np.array([float(Fraction(1, (abs(int(v)) + WEIGHT_PRIOR) ** 2)) for v in w])
    return constriction.stream.model.Categorical(p / p.sum(), perfect=False)


IRLS = 2  # reweighted rounds of the predictors' fit
IRLS_EPS = 0.5
FIT_ROWS = 20_000
WEIGHT_PRIOR = 32


# The passes' products run through BLAS on many mid-sized matrices. OpenBLAS's threads wait for work
# by spinning: beside any other busy thread (the app's, another program's) a 2K photo's lossless
# encode took 53 s of CPU instead of 10, and on an idle 2-core machine one thread was as fast. (The
# limit is the process's: two walks at once in threads may restore it out of order, which changes
# only how many threads BLAS uses; its products here are exact integers in any order.)
@threadpool_limits.wrap(limits=1, user_api="blas")
def walk(base: np.ndarray, step: int, predictor, weights, code) -> np.ndarray:
    """Reconstruct the image pass by pass (`passes`), channel by channel. predictor(features, c,
    ref, at, tiles) -> each position's correction of ref (`correction` under the weights the
    encoder fits, the decoder reads); weights(features, c, ref, at, pred) -> the energy's int64
    weights, likewise; code(ctx, pred, at, c) -> symbols. Returns the pixels (H, W, 3) uint8."""
    h, w = base.shape[:2]
    b = base.astype(np.int32).transpose(2, 0, 1)
    rec = np.zeros((3, h, w), np.int32)
    err = np.zeros((3, h, w), np.int32)  # signed: each coded value minus its prediction
    levels = levels_of(h, w)
    for group, s, half, i0, j0, near, far in passes(levels):
        rows, cols = np.arange(i0, h, s), np.arange(j0, w, s)
        if not len(rows) or not len(cols):
            continue
        n = len(rows) * len(cols)
        offsets = near + (far if n >= FULL_FROM else ())
        grids = [(_index(rows, di * half, h, s), _index(cols, dj * half, w, s)) for di, dj in offsets]
        at = (slice(i0, h, s), slice(j0, w, s))  # the pass's positions (rows x cols)
        done = []
        own = {}  # each channel coded in this pass: its ref and its neighbours' features (no pass
        # reads its own positions, so a later channel reads the very values its neighbours had)
        for ci, c in enumerate(ORDER):
            if near:
                vals = [_gather(rec[c], g) for g in grids]
                ref = (vals[0] + vals[1] + vals[2] + vals[3] + 2) >> 2
                neighbours = [v - ref for k, v in enumerate(vals) if k != 3] + directional(vals, ref, near)
                feats = neighbours + [b[c][at] - ref]
                spread = sum(np.abs(v - ref) for v in vals[:4])
                nerr = sum(np.abs(_gather(err[c], g)) for g in grids[:4])
            else:
                ref, neighbours = b[c][at], []
                feats, spread, nerr = [], 0, 0
            own[c] = ref, neighbours
            cross = 0
            for d in done:
                dref, dneighbours = own[d]
                feats.append(rec[d][at] - dref)
                feats += dneighbours
                cross = cross + np.abs(err[d][at])
            feats.append(np.full(ref.shape, CONST, np.int32))
            X = Features(feats, n)
            tiles = None
            if n >= CLASS_FROM and CLASSES > 1:
                tiles = ((rows // TILE)[:, None] * (-(-w // TILE)) + (cols // TILE)[None, :]).ravel()
            pred = ref.ravel() + predictor(X, c, ref.ravel(), at, tiles)
            pred = np.clip(pred, 0, 255).reshape(ref.shape)
            efeats = [spread, nerr, cross, np.abs(pred - ref)]
            if near and len(grids) > 4:
                efeats.append(sum(np.abs(_gather(err[c], g)) for g in grids[4:]))
                efeats.append(sum(np.abs(v - ref) for v in vals[4:]))
            efeats.append(np.full(ref.shape, 16))
            E = Features([np.broadcast_to(f, ref.shape) for f in efeats], n)
            we = weights(E, c, None, at, pred)
            energy = np.maximum(E @ we, 0) >> ENERGY_SHIFT
            energy = (energy * STEP_UNIT // step).reshape(ref.shape)
            ctx = (ci * GROUPS + group) * BUCKETS + bucket(energy)
            q = code(ctx.ravel(), pred, at, c).reshape(ref.shape)
            value = np.clip(pred + dequantize(q, step), 0, 255)
            rec[c][at] = value
            err[c][at] = value - pred
            done.append(c)
    return rec.transpose(1, 2, 0).astype(np.uint8)


def _gather(plane: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """plane[rows][:, cols] for a grid of (rows, cols): whole rows first, then the columns in them
    (the same values as one two-dimensional index, in a third of its time)."""
    return plane.take(grid[0], 0).take(grid[1], 1)


def fit(X: Features, y: np.ndarray, shift: int = 0, irls: int = 0, rows: np.ndarray | None = None) -> np.ndarray:
    """Integer weights (in 1/2^SHIFT) of the least-squares fit of y on X (at `rows`, positions; all
    by default), a little ridge so that a pass with few positions stays tame (float here: only the
    encoder fits)."""
    count = len(y) if rows is None else len(rows)
    sample = slice(None, None, count // FIT_ROWS + 1 if count > FIT_ROWS else 1)  # (as good a fit, much faster)
    index = sample if rows is None else rows[sample]
    Xf, yf = X.rows(index), y[index].astype(np.float64)
    ridge = np.eye(Xf.shape[1]) * (1.0 + 1e-6 * len(yf))
    sol = np.linalg.solve(Xf.T @ Xf + ridge, Xf.T @ yf)
    for _ in range(irls):  # towards least absolute errors: closer to the bits
        r = 1.0 / (np.abs(yf - Xf @ sol) + IRLS_EPS)
        Xr = Xf * r[:, None]
        sol = np.linalg.solve(Xr.T @ Xf + ridge * r.mean(), Xr.T @ yf)
    return np.clip(np.rint(sol * (1 << (shift or SHIFT))), -WEIGHT_RANGE, WEIGHT_RANGE - 1).astype(np.int64)


def fit_classes(X, y, tiles, ntiles, w0, corrected):
    """CLASSES weight sets, each tile's class and every row's correction under every set (n,
    CLASSES): tiles start in classes by their error under one fit (quartiles), then a few rounds of
    refitting each class and moving each tile to the class that predicts it best (least absolute
    error). w0: the one fit over all, `corrected` its corrections."""
    e0 = np.abs(y - corrected)
    count = np.bincount(tiles, minlength=ntiles)
    act = np.bincount(tiles, e0, minlength=ntiles) / np.maximum(count, 1)
    tile_cls = np.searchsorted(np.quantile(act, np.arange(1, CLASSES) / CLASSES), act).astype(np.int64)
    for _ in range(ROUNDS):
        cls = tile_cls[tiles]
        members = [np.flatnonzero(cls == k) for k in range(CLASSES)]

        def fit_class(ks: slice) -> np.ndarray:  # (a class with few members keeps the one fit)
            m = members[ks.start]
            return fit(X, y, irls=IRLS, rows=m) if len(m) > 8 * X.shape[1] else w0
        # the classes' fits two at once (each on one BLAS thread: the same weights as one after another)
        W = np.stack(strips.each(CLASSES, fit_class, 1))
        every = correction(X, W, None, all_classes=True)
        cost = np.abs(y[:, None] - every)
        tile_cls = np.stack([np.bincount(tiles, cost[:, k], minlength=ntiles) for k in range(CLASSES)], 1).argmin(1)
    return W, tile_cls, every


ROUNDS = 1


def encode_layer(rgb: np.ndarray, base: np.ndarray, step: int, seal: int) -> tuple[bytes, np.ndarray]:
    """The payload over a base (H, W, 3) uint8 at a step (sixteenths), and the pixels it decodes to."""
    x = rgb.astype(np.int32).transpose(2, 0, 1)
    items = []

    def predictor(X, c, ref, at, tiles):
        y = x[c][at].ravel() - ref
        if tiles is None:
            W = fit(X, y, irls=IRLS)[None]
            items.append(("w", W.ravel()))
            return correction(X, W, None)
        ntiles = -(-x.shape[1] // TILE) * -(-x.shape[2] // TILE)
        w0 = fit(X, y, irls=IRLS)
        one = correction(X, w0[None], None)
        W, tile_cls, every = fit_classes(X, y, tiles, ntiles, w0, one)
        many = every[np.arange(len(y)), tile_cls[tiles]]
        side = (CLASSES - 1) * X.shape[1] * 10 + ntiles * math.log2(CLASSES)  # about 10 bits a weight
        use = len(y) * math.log2((np.abs(y - one).mean() + 0.3) / (np.abs(y - many).mean() + 0.3)) > side
        items.append(("f", np.array([int(use)])))
        if not use:
            items.append(("w", w0))
            return one
        items.append(("w", W.ravel()))
        items.append(("m", tile_cls))
        return many

    def weights(X, c, ref, at, pred):
        target = x[c][at].ravel() - ref if pred is None else 8 * np.abs(x[c][at] - pred).ravel()
        wts = fit(X, target, 0 if pred is None else ENERGY_SHIFT)
        items.append(("w", wts))
        return wts

    def code(ctx, pred, at, c):
        q = quantize(x[c][at] - pred, step).ravel()
        items.append(("s", ctx, q))
        return q

    out = walk(base, step, predictor, weights, code)
    coded = [(i[1], i[2]) for i in items if i[0] == "s"]
    index = choose_tables(coded, CONTEXTS)
    coder = constriction.stream.stack.AnsCoder(words(seal))
    for item in reversed(items):
        if item[0] == "w":
            coder.encode_reverse((item[1] + WEIGHT_RANGE).astype(np.int32), _uniform())
        elif item[0] == "f":
            coder.encode_reverse(item[1].astype(np.int32), constriction.stream.model.Uniform(2))
        elif item[0] == "m":
            coder.encode_reverse(item[1].astype(np.int32), constriction.stream.model.Uniform(CLASSES))
        else:
            _, ctx, q = item
            write_group(coder, index, ctx, q)
    write_symbols(coder, [], index)  # the tables, read first
    return coder.get_compressed().astype("<u4").tobytes(), out


def payload_limit(height: int, width: int) -> int:
    """Every symbol at the tables' floor (40 bits), the weights and the tables' side information."""
    per_pass = 3 * ((CLASSES + 1) * MAX_FEATURES * WEIGHT_BITS + 2 * math.ceil(height / TILE) * math.ceil(width / TILE) + 1)
    side = (3 * MAX_LEVELS + 1) * per_pass + 8 * CONTEXTS + 64
    return 4 * math.ceil((40 * 3 * height * width + side) / 32) + 8


def decode_layer(payload, base: np.ndarray, step: int, seal: int) -> np.ndarray:
    h, w = base.shape[:2]
    coder = open_layer(payload, payload_limit(h, w))
    index = read_tables(coder, CONTEXTS)

    def predictor(X, c, ref, at, tiles):
        if tiles is None or not coder.decode(constriction.stream.model.Uniform(2), 1)[0]:
            return correction(X, weights(X, c, ref, at, None)[None], None)
        W = coder.decode(_uniform(), CLASSES * X.shape[1]).astype(np.int64).reshape(CLASSES, -1) - WEIGHT_RANGE
        tile_cls = coder.decode(constriction.stream.model.Uniform(CLASSES), -(-h // TILE) * -(-w // TILE))
        check_not_dry(coder)
        return correction(X, W, tile_cls.astype(np.int64)[tiles])

    def weights(X, c, ref, at, pred):
        wts = coder.decode(_uniform(), X.shape[1]).astype(np.int64) - WEIGHT_RANGE
        return wts

    def code(ctx, pred, at, c):
        return read_symbols(coder, index, ctx)

    out = walk(base, step, predictor, weights, code)
    check_end(coder, seal)
    return out
