"""The transform-domain enhancement layer (format 9, layer kind 2): lossy files above the presets.

A pixel-domain residual (`residual`) is the right layer for lossless and near-lossless files, but a
poor lossy coder: quantising pixels one by one leaves the residual's correlations unexploited, and
from 0.75 to 4 bpp it sat 2 to 3 dB below JPEG 2000 at the same bytes. This layer codes the same
residual (image minus the learned code's reconstruction) in a transform domain instead: an
orthonormal colour transform (an achromatic axis and two opponent ones, so an error there is the
same error in RGB), then an orthonormal 8x8 DCT of each channel, the coefficients quantised with one
step (a slight dead zone, chosen by the encoder) and coded under contexts with the tables of
`residual` (each context's table chosen per image, written at the head of the stream).

Order and contexts. Channel by channel (achromatic first), frequency by frequency in zigzag order,
the blocks in two passes of a checkerboard: so a coefficient's context reads the magnitudes of its
own block's two lower neighbours in frequency, for the chroma channels the achromatic one's at the
same place, in the second pass the same frequency in the four neighbouring blocks, and the base
reconstruction's activity in its block; every (channel, frequency, pass) decodes at once. A value
beyond the tables' range is coded as the escape (+-RADIUS) followed by the rest in two symbols of a
context of their own: never clamped.
"""
from __future__ import annotations

import math

import constriction
import numpy as np

from cycleapp.core import strips
from cycleapp.core.entropy import words
from cycleapp.core.residual import (ALPHABET, RADIUS, SCALES, STEP_UNIT, bucket, check_end, open_layer,
                                    read_symbols, read_tables, symbol_counts, tables, tables_for, write_symbols)

BLOCK = 8
# rows: the achromatic axis and two opponent colours, each of unit length, orthogonal
COLOUR = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], np.float64) / np.sqrt([[3], [2], [6]])
DCT = np.array([[math.sqrt((1 if k == 0 else 2) / BLOCK) * math.cos(math.pi * (2 * n + 1) * k / (2 * BLOCK))
                 for n in range(BLOCK)] for k in range(BLOCK)])
ZIGZAG = sorted(((u, v) for u in range(BLOCK) for v in range(BLOCK)),
                key=lambda f: (f[0] + f[1], f[0] if (f[0] + f[1]) % 2 else f[1]))
BANDS = 10  # min(u + v, 9)
BUCKETS = 12
CONTEXTS = 3 * BANDS * 2 * BUCKETS + 1  # the last: the rest of an escaped value
ESCAPE_CONTEXT = CONTEXTS - 1
MIN_STEP, MAX_STEP = 2 * STEP_UNIT, 512 * STEP_UNIT  # in sixteenths
# A coefficient's energy (its context's bucket): its block's two lower frequencies' magnitudes, the
# achromatic channel's at the same place, the four neighbouring blocks' at the same frequency (second
# pass), and the base's activity in the block over ACTIVITY_DIVISOR steps.
LOWER_WEIGHT, LUMA_WEIGHT, NEIGHBOUR_WEIGHT, ACTIVITY_DIVISOR = 8, 8, 2, 16
DEAD_ZONE = 0.1  # the encoder rounds |c| / step + 0.5 - DEAD_ZONE down: fewer small values for bits


def blocks_shape(height: int, width: int) -> tuple[int, int]:
    return -(-height // BLOCK), -(-width // BLOCK)


def padded(pixels: np.ndarray) -> np.ndarray:
    """Pixels (H, W, 3) padded to whole blocks by repeating the last row and column."""
    h, w = pixels.shape[:2]
    bh, bw = blocks_shape(h, w)
    return np.pad(pixels, ((0, bh * BLOCK - h), (0, bw * BLOCK - w), (0, 0)), mode="edge")


def forward(residual: np.ndarray) -> np.ndarray:
    """Residual pixels (H, W, 3) -> coefficients (3, BH, BW, 8, 8): the colour transform, the
    image padded to whole blocks (`padded`), the 8x8 DCT."""
    bh, bw = blocks_shape(*residual.shape[:2])
    x = padded(residual).astype(np.float64)
    x = (x @ COLOUR.T).transpose(2, 0, 1).reshape(3, bh, BLOCK, bw, BLOCK).transpose(0, 1, 3, 2, 4)
    return DCT @ x @ DCT.T


def inverse(coefficients: np.ndarray, height: int, width: int) -> np.ndarray:
    """Coefficients (3, BH, BW, 8, 8) -> residual pixels (H, W, 3), float64."""
    _, bh, bw = coefficients.shape[:3]
    x = (DCT.T @ coefficients @ DCT).transpose(0, 1, 3, 2, 4).reshape(3, bh * BLOCK, bw * BLOCK)
    return (x.transpose(1, 2, 0) @ COLOUR)[:height, :width]


def block_activity(base: np.ndarray) -> np.ndarray:
    """Per block, the base reconstruction's absolute differences to each pixel's left and upper
    neighbours, summed over the block and the channels: int64 (BH, BW)."""
    h, w = base.shape[:2]
    bh, bw = blocks_shape(h, w)
    grad = np.zeros((bh * BLOCK, bw * BLOCK), np.int32)
    for c in range(3):  # a channel at a time: a few bytes a pixel
        b = base[..., c].astype(np.int16)
        grad[:h, 1:w] += np.abs(np.diff(b, axis=1))
        grad[1:h, :w] += np.abs(np.diff(b, axis=0))
    return grad.reshape(bh, BLOCK, bw, BLOCK).sum((1, 3), dtype=np.int64)


def walk(shape: tuple[int, int], act: np.ndarray, step: int, code) -> np.ndarray:
    """Visit every coefficient in decoding order; `code(ctx, c, u, v, ys, xs) -> values` gives the
    integer values at blocks (ys, xs) of channel c, frequency (u, v) (the encoder's quantised
    coefficients, or the decoder's reading). Returns the integer coefficients (3, BH, BW, 8, 8)."""
    bh, bw = shape
    q = np.zeros((3, BLOCK, BLOCK, bh + 2, bw + 2), np.int32)  # a plane per frequency, a margin of zeros
    parity = np.add.outer(np.arange(bh), np.arange(bw)) % 2
    where = [np.nonzero(parity == p) for p in (0, 1)]
    activity = [(act[ys, xs] * STEP_UNIT) // (ACTIVITY_DIVISOR * step) for ys, xs in where]
    for c in range(3):
        for u, v in ZIGZAG:
            band = min(u + v, BANDS - 1)
            for p, (ys, xs) in enumerate(where):
                y1, x1 = ys + 1, xs + 1
                lower = (np.abs(q[c, u - 1, v][y1, x1]) if u else 0) + (np.abs(q[c, u, v - 1][y1, x1]) if v else 0)
                energy = LOWER_WEIGHT * lower + activity[p]
                if c:
                    energy = energy + LUMA_WEIGHT * np.abs(q[0, u, v][y1, x1])
                if p:
                    plane = np.abs(q[c, u, v])
                    energy = energy + NEIGHBOUR_WEIGHT * (plane[y1 - 1, x1] + plane[y1 + 1, x1]
                                                          + plane[y1, x1 - 1] + plane[y1, x1 + 1])
                ctx = ((c * BANDS + band) * 2 + p) * BUCKETS + bucket(energy)
                q[c, u, v][y1, x1] = code(ctx, c, u, v, ys, xs)
    return q[..., 1:-1, 1:-1].transpose(0, 3, 4, 1, 2)


def _with_escapes(ctx: np.ndarray, values: np.ndarray) -> list:
    """(contexts, symbols) pairs of some values: each within +-(RADIUS - 1) as it is, a larger one
    as the escape (+-RADIUS), its rest |v| - RADIUS then coded as two symbols in 0 .. 255."""
    symbols = np.clip(values, -RADIUS, RADIUS)
    pairs = [(ctx, symbols)]
    big = np.abs(values) >= RADIUS
    if big.any():
        rest = np.abs(values[big]) - RADIUS
        pairs.append((np.full(2 * rest.size, ESCAPE_CONTEXT), np.stack([rest >> 8, rest & 255], 1).ravel()))
    return pairs


def encode_layer(rgb: np.ndarray, base: np.ndarray, step: int, seal: int,
                 dead_zone: float = DEAD_ZONE, rdo: float | None = None) -> tuple[bytes, np.ndarray]:
    """The payload of the layer of an image (H, W, 3) uint8 over a base reconstruction at a step
    (sixteenths), and the pixels it decodes to. Decoding order: each context's table, then the
    coefficients (`walk`), each escaped value's rest right after its (channel, frequency, pass).
    Rate control tries many steps over one image: an `Encoder` makes what they share once."""
    return Encoder(rgb, base).encode(step, seal, dead_zone, rdo)


RDO_WEIGHT = 0.115  # bits against squared error in steps: the high-rate slope (ln 2 / 6), see `Encoder.levels`


def grid(shape: tuple[int, int]) -> tuple:
    """What an encoder over a block grid (BH, BW) reads in every step: the blocks of each pass (their
    rows and columns), the zigzag order's frequencies, whether each block is of the second pass
    (1, BH, BW, 1, 1) and each coefficient's context less its bucket (3, BH, BW, 8, 8)."""
    parity = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) % 2
    where = [np.nonzero(parity == p) for p in (0, 1)]
    zigzag = (np.array([u for u, _ in ZIGZAG]), np.array([v for _, v in ZIGZAG]))
    second = (parity[None, :, :, None, None]).astype(np.int32)
    band = np.minimum(np.add.outer(np.arange(BLOCK), np.arange(BLOCK)), BANDS - 1)
    channel = np.arange(3)[:, None, None, None, None]
    offset = ((((channel * BANDS + band) * 2 + second) * BUCKETS)).astype(np.int32)
    return where, zigzag, second, offset


class Encoder:
    """The layer's encoder for one image over one base: the coefficients and the base's activity,
    which do not depend on the step, made once; then any step's integer coefficients, their
    contexts (all at once: the encoder knows every value, so it needs no walk), an estimate of the
    payload's size, and the payload itself."""

    def __init__(self, rgb: np.ndarray, base: np.ndarray):
        self.rgb, self.base = rgb, base
        self.made = {}  # (step, dead zone, weight) -> integer coefficients
        self.made_contexts = {}  # the same key -> their contexts, for the last two (a size, then a file)
        self.made_counts = {}  # the same key -> their symbols' counts, likewise
        self.shape = blocks_shape(*base.shape[:2])
        self.coefficients = forward(rgb.astype(np.int64) - base)  # in pixel values
        self.act = block_activity(base)
        self.where, self.zigzag, self.second, self.offset = grid(self.shape)

    def levels(self, step: int, dead_zone: float = DEAD_ZONE, rdo: float | None = None) -> np.ndarray:
        """The integer coefficients (3, BH, BW, 8, 8) at a step: rounded with the dead zone, then
        with `rdo` (a weight; None: RDO_WEIGHT, 0: none) each one's level chosen among zero, its
        rounding down and up by the squared error (in steps) plus `rdo` times its bits, in the
        context and under the table the rounded values give it. A table is two-sided geometric, so
        a level l costs l times the table's bits per unit more than zero: the best level is the
        error-free value less half that (a dead zone per context), or zero."""
        rdo = RDO_WEIGHT if rdo is None else rdo
        # rate control's last tries: the one it picks is among them
        return kept(self.made, (step, dead_zone, rdo), 4, lambda: self._levels(step, dead_zone, rdo))

    def _levels(self, step: int, dead_zone: float, rdo: float) -> np.ndarray:
        # a strip of block rows at a time, each value on its own (the same numbers as all at once)
        rows = self.shape[0]
        rounded = np.empty(self.coefficients.shape, np.int32)

        def round_strip(s):
            x = self.coefficients[:, s] * (STEP_UNIT / step)
            rounded[:, s] = np.sign(x) * np.floor(np.abs(x) + (0.5 - dead_zone))
        strips.each(rows, round_strip)
        if not rdo:
            return rounded
        ctx = self.contexts(rounded, step)
        index = tables_for(sum(strips.each(rows, lambda s: symbol_counts(
            [(ctx[:, s].ravel(), np.clip(rounded[:, s], -RADIUS, RADIUS).ravel())], CONTEXTS)),
            np.zeros((CONTEXTS, ALPHABET), np.int64)))
        bits = tables()[1]
        per_unit = (rdo * (bits[:, RADIUS + 1] - bits[:, RADIUS])).astype(np.float32)[index]  # (contexts,)
        q = rounded  # (each strip's levels overwrite its own rounded values, read just before)

        def level_strip(s):
            x = self.coefficients[:, s] * (STEP_UNIT / step)
            lam = per_unit[ctx[:, s]]
            a = np.abs(x).astype(np.float32)  # (the choice needs no more precision)
            low = np.floor(a)
            level = np.clip(np.floor(a + 0.5 - lam / 2), low, low + 1)
            level[a * a <= (a - level) ** 2 + lam * level] = 0
            # beyond the tables' range: as rounded
            q[:, s] = np.where(a >= RADIUS - 1, np.abs(rounded[:, s]), level) * np.sign(x)
        strips.each(rows, level_strip)
        return q

    def contexts(self, q: np.ndarray, step: int) -> np.ndarray:
        """Every coefficient's context as `walk` gives it (3, BH, BW, 8, 8), int32: the same rule,
        all at once, since the encoder knows every value (the decoder must walk: a context reads
        values decoded before it). Any difference from `walk` would make files that do not decode,
        which the round-trip tests would catch."""
        a = np.abs(q).astype(np.int32)
        energy = np.empty_like(a)
        energy[...] = ((self.act * STEP_UNIT) // (ACTIVITY_DIVISOR * step)).astype(np.int32)[None, :, :, None, None]
        energy[..., 1:, :] += LOWER_WEIGHT * a[..., :-1, :]
        energy[..., :, 1:] += LOWER_WEIGHT * a[..., :, :-1]
        energy[1:] += LUMA_WEIGHT * a[0]
        second = self.second  # the second pass's blocks: their four neighbours, all of the first pass
        p = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
        neighbours = p[:, :-2, 1:-1] + p[:, 2:, 1:-1]
        neighbours += p[:, 1:-1, :-2]
        neighbours += p[:, 1:-1, 2:]
        neighbours *= NEIGHBOUR_WEIGHT * second
        energy += neighbours
        _, buckets = np.frexp(energy)  # the bit length of a non-negative integer
        np.minimum(buckets, BUCKETS - 1, out=buckets)
        return self.offset + buckets

    def level_contexts(self, step: int, dead_zone: float = DEAD_ZONE, rdo: float | None = None) -> np.ndarray:
        """The contexts of `levels` at a step (`contexts`), kept for the last two: rate control
        estimates a setting's size, then codes it."""
        return kept(self.made_contexts, (step, dead_zone, RDO_WEIGHT if rdo is None else rdo), 2,
                    lambda: self.contexts(self.levels(step, dead_zone, rdo), step))

    def level_counts(self, step: int, dead_zone: float = DEAD_ZONE, rdo: float | None = None) -> np.ndarray:
        """How often each symbol comes in each context at a step (`symbol_counts` of the levels and
        their contexts, escapes included: the pairs the file codes, in another order), kept for the
        last two: the size estimate's, then the file's choice of tables."""
        def counts():
            ctx, q = self.level_contexts(step, dead_zone, rdo), self.levels(step, dead_zone, rdo)
            return sum(strips.each(self.shape[0], lambda rows: symbol_counts(
                _with_escapes(ctx[:, rows].ravel(), q[:, rows].ravel()), CONTEXTS)),
                np.zeros((CONTEXTS, ALPHABET), np.int64))
        return kept(self.made_counts, (step, dead_zone, RDO_WEIGHT if rdo is None else rdo), 2, counts)

    def coded(self, q: np.ndarray, ctx: np.ndarray) -> list:
        """(contexts, symbols) pairs in `walk`'s order, escapes after their group (`_with_escapes`),
        of levels and their contexts."""
        u, v = self.zigzag
        groups = []
        for ys, xs in self.where:  # (3, 64 in zigzag order, blocks of the pass)
            groups.append((ctx[:, ys, xs][..., u, v].transpose(0, 2, 1), q[:, ys, xs][..., u, v].transpose(0, 2, 1)))
        coded = []
        for c in range(3):
            for z in range(BLOCK * BLOCK):
                for gc, gq in groups:
                    coded.extend(_with_escapes(gc[c, z], gq[c, z]))
        return coded

    def size(self, step: int, dead_zone: float = DEAD_ZONE, rdo: float | None = None) -> float:
        """An estimate of the payload's bytes at a step without coding it: every context's symbols
        at their table's ideal bits, the tables' indices at their prior's."""
        counts = self.level_counts(step, dead_zone, rdo)
        cost = counts @ tables()[1].T
        index = tables_for(counts, cost)
        d = np.abs(np.diff(index, prepend=0))
        prior = np.log2(np.sum(2.0 ** -np.abs(np.arange(-(SCALES - 1), SCALES))))
        bits = cost[np.arange(CONTEXTS), index].sum() + (d + prior).sum()
        return bits / 8 + 8

    def encode(self, step: int, seal: int, dead_zone: float = DEAD_ZONE,
               rdo: float | None = None) -> tuple[bytes, np.ndarray]:
        """The payload at a step and the pixels it decodes to (see `encode_layer`)."""
        q = self.levels(step, dead_zone, rdo)
        coded = self.coded(q, self.level_contexts(step, dead_zone, rdo))
        coder = constriction.stream.stack.AnsCoder(words(seal))
        write_symbols(coder, coded, tables_for(self.level_counts(step, dead_zone, rdo)))
        return coder.get_compressed().astype("<u4").tobytes(), reconstruct(self.base, q, step)


def kept(cache: dict, key, most: int, make):
    """cache[key], made by make() if missing, the oldest entries dropped so that at most `most`
    stay: an encoder's per-step arrays are tens of megabytes each on a 2K photo."""
    if key not in cache:
        while len(cache) >= most:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def reconstruct(base: np.ndarray, q: np.ndarray, step: int) -> np.ndarray:
    """The decoded pixels: the base plus the inverse transform of the coefficients, rounded."""
    residual = inverse(q * (step / STEP_UNIT), *base.shape[:2])
    return np.clip(np.rint(base + residual), 0, 255).astype(np.uint8)


def payload_limit(height: int, width: int) -> int:
    """The most bytes a layer of an image this size can need (every coefficient escaped, each of
    its three symbols at the floor's 40 bits), so that a larger one is refused unread."""
    bh, bw = blocks_shape(height, width)
    return 4 * math.ceil((3 * 40 * 3 * 64 * bh * bw + 8 * CONTEXTS + 64) / 32) + 8


def symbol_reader(coder, index: np.ndarray):
    """What `walk` calls to read one (channel, frequency, pass) group of a payload: its values under
    their contexts' tables (`index`), each escaped value's rest read right after the group."""
    def read(ctx, c, u, v, ys, xs):
        values = read_symbols(coder, index, ctx)
        big = np.abs(values) == RADIUS
        if big.any():
            rest = read_symbols(coder, index, np.full(2 * int(big.sum()), ESCAPE_CONTEXT)).reshape(-1, 2)
            if rest.min() < 0:
                raise ValueError("payload has a negative escape")
            values[big] = np.sign(values[big]) * (RADIUS + (rest[:, 0] << 8) + rest[:, 1])
        return values
    return read


def decode_layer(payload, base: np.ndarray, step: int, seal: int) -> np.ndarray:
    """Inverse of `encode_layer`: the pixels of a payload over its base. ValueError unless the
    payload is exactly such an encoding (within `payload_limit`, never dry, ending in the seal)."""
    h, w = base.shape[:2]
    coder = open_layer(payload, payload_limit(h, w))
    index = read_tables(coder, CONTEXTS)
    q = walk(blocks_shape(h, w), block_activity(base), step, symbol_reader(coder, index))
    check_end(coder, seal)
    return reconstruct(base, q, step)
