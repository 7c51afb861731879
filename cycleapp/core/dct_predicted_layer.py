"""The predicted transform-domain layer (format 10, layer kind 4): lossy files above the presets.

Kind 2 (`dct_layer`, format 9) codes the residual (image minus the learned code's reconstruction) as it is,
in the same colour transform and 8x8 DCT. Two things it leaves on the table, measured with ideal
code lengths at equal bytes (0.75 to 4 bpp) and kept here, each a change to what the decoder does:

- A prediction from the base itself. The learned decoder's errors correlate with its own output at
  the same place and frequency: it loses some contrast in luma, and it adds chroma detail at high
  frequencies that the photo does not have (the residual there is about minus the base's). So each
  coefficient is predicted as g times the base's own coefficient, a gain per (channel, frequency
  band) chosen by the encoder (least squares, in sixteenths, written at the head), and only the
  difference is quantised. The base's coefficients come from an integer colour transform and an
  integer DCT (the float ones rounded to 12 bits, as literals), so the decoder's prediction is
  exact integer arithmetic, then one exact conversion to float64 (an integer over a power of two).
- Sharper contexts. A coefficient's energy also counts its block's three next-lower frequencies,
  the lower frequencies of the four neighbouring blocks (decoded in both passes), for blue-yellow
  the red-green channel's value at the same place, and the base's own coefficients in steps: at the
  same place, summed with its four neighbours in frequency, and for the chroma channels the
  achromatic one's. The weights were searched on two training photos.

Everything else is kind 2's: the order (channel, zigzag frequency, checkerboard pass; every group
decodes at once), 721 contexts with the tables of `residual` chosen per image, escapes, the
rate-distortion optimised levels (now under this kind's contexts).
"""
from __future__ import annotations

import math

import constriction
import numpy as np

from cycleapp.core import dct_layer as kind2
from cycleapp.core import strips
from cycleapp.core.dct_layer import (MAX_STEP, MIN_STEP,  # noqa: F401  (this kind's steps are kind 2's)
                                     BANDS, BLOCK, BUCKETS, CONTEXTS, ZIGZAG, block_activity, blocks_shape, inverse)
from cycleapp.core.entropy import words
from cycleapp.core.residual import STEP_UNIT, check_end, open_layer, read_tables, tables_for, write_symbols


# kind 2's colour transform and DCT times 4096, rounded (literals: no float math decides them)
FRACTION = 12
COLOUR_INT = np.array([[2365, 2365, 2365], [2896, 0, -2896], [1672, -3344, 1672]], np.int64)
DCT_INT = np.array([[1448, 1448, 1448, 1448, 1448, 1448, 1448, 1448],
                    [2009, 1703, 1138, 400, -400, -1138, -1703, -2009],
                    [1892, 784, -784, -1892, -1892, -784, 784, 1892],
                    [1703, -400, -2009, -1138, 1138, 2009, 400, -1703],
                    [1448, -1448, -1448, 1448, 1448, -1448, -1448, 1448],
                    [1138, -2009, 400, 1703, -1703, -400, 2009, -1138],
                    [784, -1892, 1892, -784, -784, 1892, -1892, 784],
                    [400, -1138, 1703, -2009, 2009, -1703, 1138, -400]], np.int64)
BASE_SHIFT = 3 * FRACTION  # the integer base coefficients are the true ones times 2^36 (about)
GAIN_UNIT = 16  # gains in sixteenths
GAIN_MIN, GAIN_MAX = -32, 31  # -2 to 1.94: 64 values, each written as 6 bits
GAIN_BANDS = BANDS - 1  # bands 1..9 (the DC's gain is 0: the base's DC says nothing about the error's)
BAND = np.minimum(np.add.outer(np.arange(BLOCK), np.arange(BLOCK)), BANDS - 1)
# The energy's weights, in quarters (ENERGY_DIVISOR): decoded magnitudes in steps...
W_LOWER, W_LOWER2, W_LUMA, W_CHROMA1, W_NEIGHBOUR, W_NEIGHBOUR_LOWER = 128, 64, 64, 128, 32, 16
# ...and what the base alone gives (its coefficients in steps, its block activity as kind 2's)
W_BASE, W_BASE_AROUND, W_BASE_LUMA, W_ACTIVITY = 128, 64, 64, 2
ENERGY_DIVISOR = 4


def base_coefficients(base: np.ndarray) -> np.ndarray:
    """The base's own coefficients (3, BH, BW, 8, 8) in int64, about 2^36 times `forward`'s:
    the integer colour transform and DCT, exact on any machine. Computed in float64, as two
    matrix products of all the blocks at once (faster than int64's, which no BLAS does): every
    partial sum is an integer below 2^48 (255 x 7095 after the colour transform, times 11584 per
    DCT pass: the rows' largest absolute sums), so exact in any order."""
    bh, bw = blocks_shape(*base.shape[:2])
    x = kind2.padded(base).astype(np.float64)
    x = (x.reshape(-1, 3) @ COLOUR_INT.T.astype(np.float64)).reshape(bh, BLOCK, bw, BLOCK, 3)
    x = np.ascontiguousarray(x.transpose(4, 0, 2, 1, 3))  # (3, BH, BW, 8, 8)
    dct_t = DCT_INT.T.astype(np.float64)
    x = np.ascontiguousarray((x.reshape(-1, BLOCK) @ dct_t).reshape(x.shape).swapaxes(-1, -2))  # x @ D.T
    return (x.reshape(-1, BLOCK) @ dct_t).reshape(x.shape).swapaxes(-1, -2).astype(np.int64)  # D @ (x @ D.T)


def prediction(coefficients: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """g times the base's coefficients, float64 in pixel values: an exact integer product, then
    one conversion and a division by a power of two (the same numbers on any machine)."""
    g = np.zeros((3, BANDS), np.int64)
    g[:, 1:] = gains
    product = g[:, BAND][:, None, None] * coefficients
    return product.astype(np.float64) / float(GAIN_UNIT << BASE_SHIFT)


def base_magnitudes(coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The base's coefficients' magnitudes, and each one's sum with its four neighbours in
    frequency (in its block), both over 2^32 (rounded down, int32): `static_energy` divides them
    by the step (sixteenths), so they are in steps, and the step-independent part is made once."""
    unit = BASE_SHIFT - 4  # sixteenths of a pixel value
    here, around = (np.empty(coefficients.shape, np.int32) for _ in range(2))

    def strip(rows):  # (cache-sized strips of block rows)
        a = np.abs(coefficients[:, rows])
        near = a.copy()
        near[..., 1:, :] += a[..., :-1, :]
        near[..., :-1, :] += a[..., 1:, :]
        near[..., :, 1:] += a[..., :, :-1]
        near[..., :, :-1] += a[..., :, 1:]
        here[:, rows], around[:, rows] = a >> unit, near >> unit
    strips.each(coefficients.shape[1], strip)
    return here, around


def static_energy(magnitudes: tuple[np.ndarray, np.ndarray], act: np.ndarray, step: int) -> np.ndarray:
    """The part of every coefficient's energy (3, BH, BW, 8, 8) that the base alone gives, int32,
    capped where the bucket is the last whatever the rest (so that every sum fits 32 bits)."""
    energy = np.empty(magnitudes[0].shape, np.int32)

    def strip(rows):
        energy[:, rows] = static_part(magnitudes[0][:, rows], magnitudes[1][:, rows], act[rows], step)
    strips.each(energy.shape[1], strip)
    return energy


def static_part(here: np.ndarray, around: np.ndarray, act: np.ndarray, step: int) -> np.ndarray:
    """`static_energy` of some block rows: their `base_magnitudes` and activity (R, BW)."""
    here, around = here // step, around // step  # in steps, rounded down
    energy = W_BASE * here + W_BASE_AROUND * around
    energy[1:] += W_BASE_LUMA * here[0]
    energy += (W_ACTIVITY * ((act * STEP_UNIT) // (kind2.ACTIVITY_DIVISOR * step))).astype(np.int32)[None, :, :, None, None]
    return np.minimum(energy, ENERGY_CAP, out=energy)


ENERGY_CAP = ENERGY_DIVISOR << (BUCKETS - 1)  # an energy this large is in the last bucket
# the bucket of every energy below the cap, over ENERGY_DIVISOR: its bit length (frexp of an integer
# below 2^53 is exact), at most the last bucket's
BUCKET_OF = np.minimum(np.frexp(np.arange(ENERGY_CAP // ENERGY_DIVISOR, dtype=np.float64))[1],
                       BUCKETS - 1).astype(np.int32)


def bucket(energy: np.ndarray) -> np.ndarray:
    """min(bit length of the non-negative integer energy // ENERGY_DIVISOR, BUCKETS - 1), int32:
    looked up (a tenth of the time of frexp on ten million energies, the same buckets). Energies
    are never negative, whatever a payload holds: a decoded magnitude is at most 65,790 (an
    escape's rest is two symbols of at most 255), so an energy is under 2^26, far from int32's end."""
    return BUCKET_OF.take(np.minimum(energy, ENERGY_CAP - 1) // ENERGY_DIVISOR)


def context_offset(c, band, second):
    return ((c * BANDS + band) * 2 + second) * BUCKETS


def _around(plane: np.ndarray) -> np.ndarray:
    """The sum of each block's four neighbours' values (BH, BW) of a plane with a margin of zeros."""
    return plane[:-2, 1:-1] + plane[2:, 1:-1] + plane[1:-1, :-2] + plane[1:-1, 2:]


def walk(shape: tuple[int, int], static: np.ndarray, code) -> np.ndarray:
    """Visit every coefficient in decoding order (kind 2's); `code(ctx, c, u, v, ys, xs) ->
    values` gives the integer values at blocks (ys, xs) of channel c, frequency (u, v). `static`:
    `static_energy`. Returns the integer coefficients (3, BH, BW, 8, 8). What a group's energy
    reads of the blocks decoded before it is made for the whole plane by slicing, then gathered."""
    bh, bw = shape
    static = np.ascontiguousarray(static.transpose(0, 3, 4, 1, 2))  # a plane per (channel, frequency)
    a = np.zeros((3, BLOCK, BLOCK, bh + 2, bw + 2), np.int32)  # magnitudes, a margin of zeros
    q = np.zeros((3, BLOCK, BLOCK, bh * bw), np.int64)
    parity = np.add.outer(np.arange(bh), np.arange(bw)) % 2
    where = [np.nonzero(parity == p) for p in (0, 1)]
    flat = [ys * bw + xs for ys, xs in where]
    for c in range(3):
        for u, v in ZIGZAG:
            band = min(u + v, BANDS - 1)
            energy = static[c, u, v].copy()
            if u or v:
                lower = (a[c, u - 1, v] if u else 0) + (a[c, u, v - 1] if v else 0)
                energy += W_LOWER * lower[1:-1, 1:-1] + W_NEIGHBOUR_LOWER * _around(lower)
            if u + v > 1:
                lower2 = ((a[c, u - 1, v - 1] if u and v else 0) + (a[c, u - 2, v] if u > 1 else 0)
                          + (a[c, u, v - 2] if v > 1 else 0))
                energy += W_LOWER2 * lower2[1:-1, 1:-1]
            if c:
                energy += W_LUMA * a[0, u, v][1:-1, 1:-1]
            if c == 2:
                energy += W_CHROMA1 * a[1, u, v][1:-1, 1:-1]
            for p, (ys, xs) in enumerate(where):
                e = energy.ravel()[flat[p]]
                if p:  # the four neighbours at this frequency: all of the first pass
                    e += W_NEIGHBOUR * _around(a[c, u, v]).ravel()[flat[p]]
                values = code(context_offset(c, band, p) + bucket(e), c, u, v, ys, xs)
                q[c, u, v][flat[p]] = values
                a[c, u, v][ys + 1, xs + 1] = np.abs(values)
    return q.reshape(3, BLOCK, BLOCK, bh, bw).transpose(0, 3, 4, 1, 2)


def least_squares_gains(across: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """The gains (3, GAIN_BANDS) int64, in sixteenths, from the sums per (channel, band 1..9) of
    residual times base and base times base coefficients: each band's least-squares gain, clipped to
    the gains' range (0 where the base has no energy)."""
    gains = np.zeros(energy.shape, np.int64)
    fit = energy > 0
    gains[fit] = np.clip(np.rint(GAIN_UNIT * across[fit] / energy[fit]), GAIN_MIN, GAIN_MAX)
    return gains


def _gain_model():
    return constriction.stream.model.Categorical(np.full(GAIN_MAX - GAIN_MIN + 1, 1 / (GAIN_MAX - GAIN_MIN + 1)),
                                                 perfect=False)


def encode_layer(rgb: np.ndarray, base: np.ndarray, step: int, seal: int) -> tuple[bytes, np.ndarray]:
    """The payload of the layer of an image (H, W, 3) uint8 over a base reconstruction at a step
    (sixteenths), and the pixels it decodes to. Decoding order: the gains (3 x 9, 6 bits each), each
    context's table, then the coefficients (`walk`), each escaped value's rest right after its
    (channel, frequency, pass)."""
    return Encoder(rgb, base).encode(step, seal)


def _energy(a: np.ndarray, static: np.ndarray, second: np.ndarray) -> np.ndarray:
    """`walk`'s energy of every coefficient of some block rows (3, R, BW, 8, 8) from the magnitudes
    `a` of all their coefficients, the base's part (`static_energy`) and which blocks are of the
    second pass (R, BW as (1, R, BW, 1, 1)); the first and last rows only lend their neighbours."""
    energy = static.copy()
    lower = np.zeros_like(a)  # the two next-lower frequencies in the block
    lower[..., 1:, :] = a[..., :-1, :]
    lower[..., :, 1:] += a[..., :, :-1]
    around = lower * W_NEIGHBOUR_LOWER  # ...and in the four neighbouring blocks
    energy[:, 1:] += around[:, :-1]
    energy[:, :-1] += around[:, 1:]
    energy[:, :, 1:] += around[:, :, :-1]
    energy[:, :, :-1] += around[:, :, 1:]
    lower *= W_LOWER
    energy += lower
    lower2 = lower  # the three after them
    lower2[...] = 0
    lower2[..., 1:, 1:] = a[..., :-1, :-1]
    lower2[..., 2:, :] += a[..., :-2, :]
    lower2[..., :, 2:] += a[..., :, :-2]
    lower2 *= W_LOWER2
    energy += lower2
    energy[1:] += W_LUMA * a[0]
    energy[2] += W_CHROMA1 * a[1]
    same = around  # the same frequency in the four neighbouring blocks, for the second pass's
    same[...] = 0
    same[:, 1:] = a[:, :-1]
    same[:, :-1] += a[:, 1:]
    same[:, :, 1:] += a[:, :, :-1]
    same[:, :, :-1] += a[:, :, 1:]
    same *= W_NEIGHBOUR * second
    energy += same
    return energy


class Encoder(kind2.Encoder):
    """Kind 2's encoder (its RDO levels, size estimate and coding order), over the residual less
    the base prediction, with this kind's contexts."""

    def __init__(self, rgb: np.ndarray, base: np.ndarray):
        super().__init__(rgb, base)
        own = base_coefficients(base)
        self.magnitudes = base_magnitudes(own)
        self.gains = self.choose_gains(own)
        self.prediction = prediction(own, self.gains)
        self.coefficients -= self.prediction  # what the levels quantise: the residual's less the prediction
        self.statics = {}

    def choose_gains(self, own: np.ndarray) -> np.ndarray:
        """Per (channel, band 1..9) the least-squares gain of the residual on the base's own
        coefficients (`base_coefficients`), in sixteenths (the encoder's choice: any gain decodes)."""
        b = own.astype(np.float64) / (1 << BASE_SHIFT)
        sums = np.zeros((2, 3, GAIN_BANDS))  # residual . base and base . base per (channel, band)
        for c in range(3):
            for band in range(1, BANDS):
                m = BAND == band
                r, x = self.coefficients[c][..., m].ravel(), b[c][..., m].ravel()
                sums[:, c, band - 1] = r @ x, x @ x
        return least_squares_gains(*sums)

    def static(self, step: int) -> np.ndarray:
        return kind2.kept(self.statics, step, 2, lambda: static_energy(self.magnitudes, self.act, step))

    def contexts(self, q: np.ndarray, step: int) -> np.ndarray:
        """Every coefficient's context as `walk` gives it (3, BH, BW, 8, 8), int32, all at once,
        a strip of block rows at a time (`strips`, with a row of neighbours either side): a strip's dozen
        temporaries stay in the processor's cache, which made a 2K photo's contexts twice as fast."""
        static = self.static(step)
        out = np.empty(q.shape, np.int32)
        rows = q.shape[1]

        def strip(own):
            lo, hi = max(0, own.start - 1), min(rows, own.stop + 1)
            a = np.abs(q[:, lo:hi]).astype(np.int32, copy=False)
            energy = _energy(a, static[:, lo:hi], self.second[:, lo:hi])
            out[:, own] = self.offset[:, own] + bucket(energy[:, own.start - lo:own.stop - lo])
        strips.each(rows, strip)
        return out

    def size(self, step: int, dead_zone: float = kind2.DEAD_ZONE, rdo: float | None = None) -> float:
        """An estimate of the payload's bytes (kind 2's, plus the gains' 6 bits each)."""
        return super().size(step, dead_zone, rdo) + 6 * 3 * GAIN_BANDS / 8

    def encode(self, step: int, seal: int, dead_zone: float = kind2.DEAD_ZONE,
               rdo: float | None = None) -> tuple[bytes, np.ndarray]:
        """The payload at a step and the pixels it decodes to (see `encode_layer`)."""
        return self.payload(step, seal, dead_zone, rdo), self.pixels(self.levels(step, dead_zone, rdo), step)

    def payload(self, step: int, seal: int, dead_zone: float = kind2.DEAD_ZONE, rdo: float | None = None) -> bytes:
        """The payload at a step alone (`encode` without the pixels: rate control makes those only
        for the candidates it compares)."""
        q = self.levels(step, dead_zone, rdo)
        coded = self.coded(q, self.level_contexts(step, dead_zone, rdo))
        coder = constriction.stream.stack.AnsCoder(words(seal))
        write_symbols(coder, coded, tables_for(self.level_counts(step, dead_zone, rdo)))
        self.write_head(coder)
        return coder.get_compressed().astype("<u4").tobytes()

    def write_head(self, coder) -> None:
        """Code what the decoder reads before the tables (in reverse, like everything on the stack):
        the gains."""
        write_gains(coder, self.gains)

    def pixels(self, q: np.ndarray, step: int) -> np.ndarray:
        """The pixels that levels at a step decode to."""
        return reconstruct(self.base, q, step, self.prediction)


def write_gains(coder, gains: np.ndarray) -> None:
    coder.encode_reverse((gains.ravel() - GAIN_MIN).astype(np.int32), _gain_model())


def read_gains(coder) -> np.ndarray:
    return coder.decode(_gain_model(), 3 * GAIN_BANDS).astype(np.int64).reshape(3, GAIN_BANDS) + GAIN_MIN


def reconstruct(base: np.ndarray, q: np.ndarray, step: int, predicted: np.ndarray) -> np.ndarray:
    """The decoded pixels: the base plus the inverse transform of prediction + levels, rounded."""
    residual = inverse(predicted + q * (step / STEP_UNIT), *base.shape[:2])
    return np.clip(np.rint(base + residual), 0, 255).astype(np.uint8)


def payload_limit(height: int, width: int) -> int:
    """The most bytes a layer of an image this size can need: kind 2's, plus the gains."""
    return kind2.payload_limit(height, width) + 4 * math.ceil(40 * 3 * GAIN_BANDS / 32)


def decode_layer(payload, base: np.ndarray, step: int, seal: int) -> np.ndarray:
    """Inverse of `encode_layer`: the pixels of a payload over its base. ValueError unless the
    payload is exactly such an encoding (within `payload_limit`, never dry, ending in the seal)."""
    h, w = base.shape[:2]
    coder = open_layer(payload, payload_limit(h, w))
    gains = read_gains(coder)
    index = read_tables(coder, CONTEXTS)
    coefficients = base_coefficients(base)
    q = walk(blocks_shape(h, w), static_energy(base_magnitudes(coefficients), block_activity(base), step),
             kind2.symbol_reader(coder, index))
    check_end(coder, seal)
    return reconstruct(base, q, step, prediction(coefficients, gains))
