"""The adaptive transform layer (format 11, layer kind 5; format 13, kind 7: the same over a base made
in even tiles, `codec.even_tiles`): lossy files above the presets.

Kind 4 (`dct_predicted_layer`) codes the residual (image minus the learned code's reconstruction)
in 8x8 DCT blocks everywhere. On smooth areas, most of a modern 2K photo, a larger transform
gathers the same energy into fewer coefficients; on edges and texture it spreads ringing. So here
the encoder chooses, for every 32x32 region of the image, one 32x32 DCT, or for each of its four
16x16 regions one 16x16 DCT or four 8x8 ones (by the rate-distortion cost of each, at a step near
the file's: `decision_step`), and writes the choice as one flag per region.

A larger transform's coefficients are dealt into the 8x8 blocks it covers: coefficient
(k*a + dy, k*b + dx) of a k*8-point DCT goes to frequency (a, b) of the block at (dy, dx) in its
region. A block so dealt holds about the spatial frequencies an 8x8 DCT of that place would, so
everything of kind 4 applies unchanged to the blocks: the order (channel, zigzag frequency,
checkerboard pass), the contexts, the prediction from the base's own coefficients (the base's
coefficients of the same transforms, in the same exact integer arithmetic, a 32-point DCT's partial
sums below 2^50; a gain times such a coefficient can pass 2^53, so its conversion to float64 rounds,
to nearest as IEEE 754 does everywhere), the gains, the tables, the escapes, the rate-distortion
optimised levels.

Decoding order: kind 4's gains; the two flags' probabilities (6 bits each); a flag for every 32x32
region whose blocks are all in the image's block grid (row by row), then one for every such 16x16
region not in a flagged 32x32 one; then kind 4's tables and coefficients. Against kind 4 at the same PSNR
(BD-rate over its steps from 0.05 to 6 bpp) the choice saved 2.6 to 10.6 % of the bytes on four
Kodak and CLIC photos, the most on the smooth 2K ones (one 16x16 DCT everywhere: +0.1 to -5.4 %;
one 32x32 DCT: +3.9 to -3.7 %).
"""
from __future__ import annotations

import math

import constriction
import numpy as np

from cycleapp.core import dct_layer as kind2
from cycleapp.core import dct_predicted_layer as kind4
from cycleapp.core import strips
from cycleapp.core.dct_layer import MAX_STEP, MIN_STEP, BLOCK, CONTEXTS, DEAD_ZONE, RDO_WEIGHT  # noqa: F401
from cycleapp.core.entropy import check_not_dry
from cycleapp.core.residual import ALPHABET, RADIUS, STEP_UNIT, check_end, open_layer, read_tables, tables, tables_for

SIZES = (8, 16, 32)  # the transforms' sizes, each a region of (size / 8)^2 blocks
FLAG_UNIT = 64  # a flag's probability in 64ths, 1 to 63, written in 6 bits


def float_dct(n: int) -> np.ndarray:
    """The orthonormal n-point DCT-II matrix (rows: frequencies)."""
    return np.array([[math.sqrt((1 if k == 0 else 2) / n) * math.cos(math.pi * (2 * i + 1) * k / (2 * n))
                      for i in range(n)] for k in range(n)])


def _integer_dct(n: int, checksum: int) -> np.ndarray:
    """float_dct(n) times 4096, rounded: no entry is within 0.015 of a half, so every machine rounds
    alike; the checksum makes sure of it (a decoder that built another matrix would make other pixels)."""
    m = np.rint(4096 * float_dct(n)).astype(np.int64)
    if int((m * np.arange(1, n * n + 1).reshape(n, n)).sum()) != checksum:
        raise RuntimeError(f"the integer {n}-point DCT came out wrong on this machine")
    return m


INTEGER_DCT = {8: _integer_dct(8, 21946), 16: _integer_dct(16, 50250), 32: _integer_dct(32, 125262)}
assert np.array_equal(INTEGER_DCT[8], kind4.DCT_INT)
FLOAT_DCT = {8: kind2.DCT, 16: float_dct(16), 32: float_dct(32)}  # (kind 2's is float_dct(8), bit for bit)


def deal(c: np.ndarray, n: int) -> np.ndarray:
    """Coefficients of n-point DCTs (3, RH, RW, n, n) -> the blocks they cover (3, k*RH, k*RW, 8, 8),
    k = n / 8: coefficient (k*a + dy, k*b + dx) to frequency (a, b) of block (dy, dx)."""
    k = n // BLOCK
    _, rh, rw = c.shape[:3]
    return c.reshape(3, rh, rw, BLOCK, k, BLOCK, k).transpose(0, 1, 4, 2, 6, 3, 5).reshape(3, k * rh, k * rw,
                                                                                           BLOCK, BLOCK)


def gather(c: np.ndarray, n: int) -> np.ndarray:
    """Inverse of `deal`: blocks (3, k*RH, k*RW, 8, 8) -> coefficients (3, RH, RW, n, n)."""
    k = n // BLOCK
    _, bh, bw = c.shape[:3]
    rh, rw = bh // k, bw // k
    return c.reshape(3, rh, k, rw, k, BLOCK, BLOCK).transpose(0, 1, 3, 5, 2, 6, 4).reshape(3, rh, rw, n, n)


def transform(x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """left @ x @ right for a stack of square matrices x (..., n, n), as two matrix products of the
    whole stack (a stack of small products is several times slower)."""
    shape = x.shape
    y = np.ascontiguousarray(np.dot(x.reshape(-1, shape[-1]), right).reshape(shape).swapaxes(-1, -2))
    return np.dot(y.reshape(-1, shape[-1]), left.T).reshape(shape).swapaxes(-1, -2)


assert strips.STRIP % (SIZES[-1] // BLOCK) == 0  # (a strip is whole 32x32 regions)


def planes(pixels: np.ndarray, rows: slice, colour: np.ndarray) -> np.ndarray:
    """Some block rows of padded pixels in a colour transform: (3, R*8, BW*8), float64."""
    x = pixels[rows.start * BLOCK:rows.stop * BLOCK].astype(np.float64)
    return (x.reshape(-1, 3) @ colour.T).reshape(*x.shape[:2], 3).transpose(2, 0, 1)


def coefficients(planes: np.ndarray, n: int, dct: np.ndarray) -> np.ndarray:
    """Planes (3, R*8, BW*8) -> dct @ region @ dct.T of every whole n x n region, dealt into the
    blocks it covers (3, k*(R/k), k*(BW/k), 8, 8), k = n / 8."""
    rh, rw = planes.shape[1] // n, planes.shape[2] // n
    regions = planes[:, :rh * n, :rw * n].reshape(3, rh, n, rw, n).transpose(0, 1, 3, 2, 4)
    return deal(transform(regions, dct, dct.T), n)


def base_coefficients(planes: np.ndarray, n: int) -> np.ndarray:
    """The base's own coefficients of n-point DCTs (`coefficients` of its planes in kind 4's integer
    colour transform) in int64, about 2^36 times the float ones: kind 4's integer arithmetic,
    computed in float64 and exact in any order: every partial sum is an integer below 2^50 (255 x
    7095 after the colour transform, times at most 23,168 per DCT pass: the largest absolute row sum
    of the 32-point one)."""
    return coefficients(planes, n, INTEGER_DCT[n].astype(np.float64)).astype(np.int64)


def select(sizes: np.ndarray, by_size: dict) -> np.ndarray:
    """One array of blocks (3, BH, BW, ...) from per-size arrays (`by_size`, each over its whole
    regions: the top left of the block grid): each block from its own size's."""
    out = by_size[8].copy()
    for n in SIZES[1:]:
        part = by_size.get(n)
        if part is not None:
            mask = sizes[:part.shape[1], :part.shape[2]] == n
            out[:, :part.shape[1], :part.shape[2]][:, mask] = part[:, mask]
    return out


def base_coefficients_in(pixels: np.ndarray, sizes: np.ndarray, rows: slice) -> np.ndarray:
    """The base's own coefficients (3, R, BW, 8, 8) int64 of some block rows in a layout, each
    block's of its own transform (`pixels`: the base, `kind2.padded`)."""
    p = planes(pixels, rows, kind4.COLOUR_INT.astype(np.float64))
    return select(sizes[rows], {n: base_coefficients(p, n) for n in SIZES if n == 8 or (sizes[rows] == n).any()})


def static_energy(base: np.ndarray, sizes: np.ndarray, step: int) -> np.ndarray:
    """Kind 4's static part of every coefficient's energy (3, BH, BW, 8, 8) in a layout at a step:
    from the base's own coefficients of each block's transform."""
    pixels, act = kind2.padded(base), kind2.block_activity(base)
    static = np.empty((3, *sizes.shape, BLOCK, BLOCK), np.int32)

    def strip(rows):
        own = base_coefficients_in(pixels, sizes, rows)
        static[:, rows] = kind4.static_energy(kind4.base_magnitudes(own), act[rows], step)
    strips.each(sizes.shape[0], strip)
    return static


def inverse(coefficients: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Coefficients (3, R, BW, 8, 8) of some block rows in a layout (R a multiple of 4 but at the
    grid's end) -> residual pixels (R*8, BW*8, 3), float64: each size's transforms made back into
    pixels as 8x8 blocks, each block taken from its own size's."""
    _, bh, bw = coefficients.shape[:3]
    d = FLOAT_DCT[8]
    by_size = {8: transform(coefficients, d.T, d)}
    for n in SIZES[1:]:
        k = n // BLOCK
        rh, rw = bh // k, bw // k
        if (sizes[:k * rh, :k * rw] == n).any():
            d = FLOAT_DCT[n]
            r = transform(gather(coefficients[:, :k * rh, :k * rw], n), d.T, d)  # (3, RH, RW, n, n)
            by_size[n] = r.reshape(3, rh, rw, k, BLOCK, k, BLOCK).transpose(0, 1, 3, 2, 5, 4, 6).reshape(
                3, k * rh, k * rw, BLOCK, BLOCK)
    return select(sizes, by_size).transpose(1, 3, 2, 4, 0).reshape(bh * BLOCK, bw * BLOCK, 3) @ kind2.COLOUR


def reconstruct(base: np.ndarray, q: np.ndarray, step: int, gains: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The decoded pixels: the base plus the inverse transforms of the prediction (kind 4's, from the
    base's own coefficients of each block's transform) and the levels, rounded; strip by strip."""
    h, w = base.shape[:2]
    pixels = kind2.padded(base)
    out = np.empty(pixels.shape, np.uint8)

    def strip(rows):
        x = kind4.prediction(base_coefficients_in(pixels, sizes, rows), gains)
        x += q[:, rows] * (step / STEP_UNIT)
        px = slice(rows.start * BLOCK, rows.stop * BLOCK)
        out[px] = np.clip(np.rint(pixels[px] + inverse(x, sizes[rows])), 0, 255)
    strips.each(sizes.shape[0], strip)
    return out[:h, :w]


# --- the layout and its flags ---------------------------------------------------------------------

def _corners(shape: tuple[int, int], n: int) -> tuple[slice, slice]:
    """The top-left block of every whole n x n region of a block grid, as slices of it."""
    k = n // BLOCK
    return slice(0, shape[0] // k * k, k), slice(0, shape[1] // k * k, k)


def _spread(flags: np.ndarray, n: int, shape: tuple[int, int]) -> np.ndarray:
    """Region flags (RH, RW) -> a mask of the blocks (BH, BW) of the flagged regions."""
    k = n // BLOCK
    out = np.zeros(shape, bool)
    out[:flags.shape[0] * k, :flags.shape[1] * k] = np.repeat(np.repeat(flags, k, 0), k, 1)
    return out


def flags_of(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A layout's flags in coding order: every whole 32x32 region's (one 32x32 DCT?), then every
    whole 16x16 region's not in a 32x32 DCT (one 16x16 DCT?)."""
    whole32 = sizes[_corners(sizes.shape, 32)] == 32
    in32 = _spread(whole32, 32, sizes.shape)[_corners(sizes.shape, 16)]
    return whole32.ravel(), (sizes[_corners(sizes.shape, 16)] == 16)[~in32]


def layout(shape: tuple[int, int], flags32: np.ndarray, flags16: np.ndarray) -> np.ndarray:
    """Inverse of `flags_of`: each block's transform size (BH, BW) int64."""
    bh, bw = shape
    whole32 = flags32.reshape(bh // 4, bw // 4).astype(bool)
    in32 = _spread(whole32, 32, shape)[_corners(shape, 16)]
    whole16 = np.zeros(in32.shape, bool)
    whole16[~in32] = flags16.astype(bool)
    sizes = np.full(shape, 8, np.int64)
    sizes[_spread(whole16, 16, shape)] = 16
    sizes[_spread(whole32, 32, shape)] = 32
    return sizes


def _flag_model(p: int):
    return constriction.stream.model.Categorical(np.array([FLAG_UNIT - p, p], np.float64) / FLAG_UNIT, perfect=False)


def _probability(flags: np.ndarray) -> int:
    """The flags' probability of a one, in 64ths, 1 to 63."""
    return int(np.clip(np.rint(FLAG_UNIT * flags.mean()), 1, FLAG_UNIT - 1)) if flags.size else FLAG_UNIT // 2


def flag_bytes(sizes: np.ndarray) -> float:
    """The bytes a layout's flags take, about (their ideal bits, the probabilities' 12)."""
    bits = 12.0
    for flags in flags_of(sizes):
        p = _probability(flags) / FLAG_UNIT
        ones = int(flags.sum())
        bits -= ones * math.log2(p) + (flags.size - ones) * math.log2(1 - p)
    return bits / 8


def write_layout(coder, sizes: np.ndarray) -> None:
    """Code a layout's flags in reverse (see the module's order)."""
    flags = flags_of(sizes)
    probabilities = [_probability(f) for f in flags]
    for f, p in reversed(list(zip(flags, probabilities))):
        if f.size:
            coder.encode_reverse(f.astype(np.int32), _flag_model(p))
    coder.encode_reverse(np.array(probabilities, np.int32), kind4._gain_model())


def read_layout(coder, shape: tuple[int, int]) -> np.ndarray:
    """The layout `write_layout` wrote, for a block grid (BH, BW); ValueError for a probability of 0."""
    p32, p16 = (int(p) for p in coder.decode(kind4._gain_model(), 2))
    check_not_dry(coder)
    if not (p32 and p16):
        raise ValueError("payload has a flag probability of zero")
    n32 = (shape[0] // 4) * (shape[1] // 4)
    flags32 = coder.decode(_flag_model(p32), n32) if n32 else np.zeros(0, np.int32)
    check_not_dry(coder)
    n16 = (shape[0] // 2) * (shape[1] // 2) - 4 * int(flags32.sum())
    flags16 = coder.decode(_flag_model(p16), n16) if n16 else np.zeros(0, np.int32)
    check_not_dry(coder)
    return layout(shape, flags32, flags16)


# --- the encoder --------------------------------------------------------------------------------

DECISIONS_PER_OCTAVE = 4


def decision_step(step: int) -> int:
    """The step whose layout a step's file uses: the nearest of DECISIONS_PER_OCTAVE an octave, so that
    rate control's tries at nearby steps share one choice of layout (each is most of a try's time;
    one made at a step 9 % off codes about 0.1 % larger)."""
    return round(2 ** (round(DECISIONS_PER_OCTAVE * math.log2(step)) / DECISIONS_PER_OCTAVE))


def gains(dot: np.ndarray) -> np.ndarray:
    """Kind 4's gains (`kind4.least_squares_gains`) from the sums over all 8x8 blocks of residual
    times base and base times base coefficients per (channel, frequency) (2, 3, 8, 8)."""
    return kind4.least_squares_gains(*np.stack([dot[..., kind4.BAND == band].sum(-1)
                                                for band in range(1, kind4.BANDS)], -1))


class Encoder:
    """The layer's encoder for one image over one base. What no step changes is made once, for each
    transform size over its whole regions: the coefficients less their prediction (float32: only the
    encoder's choices read them), the base's magnitudes; the gains are kind 4's, chosen on the 8x8
    blocks and used for every size. At a step, the layout (`sizes_at`), then kind 4's encoder over
    the blocks so laid out (`Layout`), kept for the last two steps: rate control estimates a step's
    size, then codes it."""

    def __init__(self, rgb: np.ndarray, base: np.ndarray):
        self.rgb, self.base = rgb, base
        self.shape = bh, bw = kind2.blocks_shape(*base.shape[:2])
        self.act = kind2.block_activity(base)
        self.where, self.zigzag, self.second, self.offset = kind2.grid(self.shape)
        residual, own = kind2.padded(rgb.astype(np.int16) - base), kind2.padded(base)
        blocks = {n: (3, bh // (n // BLOCK) * (n // BLOCK), bw // (n // BLOCK) * (n // BLOCK), BLOCK, BLOCK)
                  for n in SIZES}
        self.residual = {n: np.empty(shape, np.float32) for n, shape in blocks.items()}
        self.magnitudes = {n: (np.empty(shape, np.int32), np.empty(shape, np.int32)) for n, shape in blocks.items()}
        base_part = {n: np.empty(shape, np.float32) for n, shape in blocks.items()}  # in pixel values

        def strip(rows):  # -> this strip's residual . base and base . base on the 8x8 blocks
            r = planes(residual, rows, kind2.COLOUR)
            b = planes(own, rows, kind4.COLOUR_INT.astype(np.float64))
            dot = None
            for n in SIZES:
                part = slice(rows.start, rows.start + (rows.stop - rows.start) // (n // BLOCK) * (n // BLOCK))
                self.residual[n][:, part] = c = coefficients(r, n, FLOAT_DCT[n])
                integer = base_coefficients(b, n)
                here, around = self.magnitudes[n][0][:, part], self.magnitudes[n][1][:, part]
                here[...], around[...] = kind4.base_magnitudes(integer)
                base_part[n][:, part] = x = integer / float(1 << kind4.BASE_SHIFT)
                if n == BLOCK:  # (the gains are chosen on the 8x8 blocks, in float64)
                    dot = np.stack([(c * x).sum((1, 2)), (x * x).sum((1, 2))])
            return dot
        self.gains = gains(sum(strips.each(bh, strip), np.zeros((2, 3, BLOCK, BLOCK))))
        g = np.zeros((3, kind4.BANDS), np.float32)
        g[:, 1:] = self.gains / kind4.GAIN_UNIT
        for n in SIZES:  # what the levels quantise: the residual's coefficients less the prediction
            def less_prediction(rows):
                self.residual[n][:, rows] -= g[:, kind4.BAND][:, None, None] * base_part[n][:, rows]
            strips.each(self.residual[n].shape[1], less_prediction)
        self.layouts, self.decisions = {}, {}

    def costs(self, n: int, step: int) -> np.ndarray:
        """Per block of the whole n x n regions (the top left of the block grid), coded as n x n
        transforms: the squared error (in steps) plus RDO_WEIGHT times the bits of its levels, for
        the choice of layout only, so made simply: the levels rounded (not rate-distortion
        optimised), a context of the base's part of the energy and the block's two lower frequencies
        only, tables chosen from those, each value clipped to the tables' range. (The layouts so
        chosen coded within 0.03 % of those chosen by the file's own levels and contexts, at a small
        part of the time.) Strip by strip: the levels' errors and contexts, then their bits under
        the tables their counts choose."""
        residual, (here, around) = self.residual[n], self.magnitudes[n]
        width = residual.shape[2]
        scale = np.float32(STEP_UNIT / step)
        keys = np.empty(residual.shape, np.int32)  # each coefficient's (context, symbol)
        out = np.empty(residual.shape[1:3], np.float32)

        def levels(rows):  # -> the strip's counts of (context, symbol)
            x = residual[:, rows] * scale
            q = np.sign(x) * np.floor(np.abs(x) + np.float32(0.5 - DEAD_ZONE))
            a = np.abs(q).astype(np.int32)
            energy = kind4.static_part(here[:, rows], around[:, rows], self.act[rows, :width], step)
            energy[..., 1:, :] += kind4.W_LOWER * a[..., :-1, :]
            energy[..., :, 1:] += kind4.W_LOWER * a[..., :, :-1]
            x -= q
            x *= x
            out[rows] = x.sum((0, 3, 4))
            k = keys[:, rows]
            k[...] = (self.offset[:, rows, :width] + kind4.bucket(energy)) * ALPHABET + RADIUS
            k += np.clip(q, -RADIUS, RADIUS, out=q).astype(np.int32)
            return np.bincount(k.ravel(), minlength=CONTEXTS * ALPHABET)

        counts = sum(strips.each(residual.shape[1], levels), np.zeros(CONTEXTS * ALPHABET, np.int64))
        index = tables_for(counts.reshape(CONTEXTS, ALPHABET))
        bits = (RDO_WEIGHT * tables()[1][index]).astype(np.float32).ravel()  # (contexts x symbols)

        def rate(rows):
            out[rows] += bits.take(keys[:, rows]).sum((0, 3, 4))
        strips.each(residual.shape[1], rate)
        return out

    def sizes_at(self, step: int) -> np.ndarray:
        """The layout at a step: each 16x16 region one 16x16 DCT where that costs less than its four
        8x8 ones, each 32x32 region one 32x32 DCT where that costs less than the better of those
        (`costs`, each size's over its whole regions)."""
        cost = {n: self.costs(n, step) for n in SIZES}
        pool = lambda c, k: c[:c.shape[0] // k * k, :c.shape[1] // k * k].reshape(
            c.shape[0] // k, k, c.shape[1] // k, k).sum((1, 3))
        sixteen = pool(cost[16], 2) < pool(cost[8], 2)
        best = np.minimum(pool(cost[16], 2), pool(cost[8], 2))
        thirty_two = pool(cost[32], 4) < pool(best, 2)
        sizes = np.full(self.shape, 8, np.int64)
        sizes[_spread(sixteen, 16, self.shape)] = 16
        sizes[_spread(thirty_two, 32, self.shape)] = 32
        return sizes

    def at(self, step: int) -> "Layout":
        """Kind 4's encoder at a step over the layout of its `decision_step`."""
        return kind2.kept(self.layouts, step, 2, lambda: Layout(self, kind2.kept(
            self.decisions, decision_step(step), 2, lambda: self.sizes_at(decision_step(step)))))

    def size(self, step: int) -> float:
        """An estimate of the payload's bytes at a step (kind 4's over the layout, and the flags)."""
        view = self.at(step)
        return view.size(step) + flag_bytes(view.sizes)

    def encode(self, step: int, seal: int) -> tuple[bytes, np.ndarray]:
        """The payload at a step and the pixels it decodes to."""
        return self.at(step).encode(step, seal)

    def payload(self, step: int, seal: int) -> bytes:
        """The payload at a step alone."""
        return self.at(step).payload(step, seal)

    def pixels_at(self, step: int) -> np.ndarray:
        """The pixels the payload at a step decodes to (from its levels, kept for the last few steps)."""
        view = self.at(step)
        return view.pixels(view.levels(step), step)


class Layout(kind4.Encoder):
    """Kind 4's encoder over the blocks of one layout (`Encoder.sizes_at`): the same levels,
    contexts and coding, the layout's flags written after the gains."""

    def __init__(self, image: Encoder, sizes: np.ndarray):
        # kind 4's made from the image's arrays, not from pixels; no reference back to the image's
        # encoder, which keeps this one: a cycle would keep both (hundreds of megabytes on a 2K
        # photo) until the garbage collector's next full pass, long after rate control is done
        self.rgb, self.base, self.sizes = image.rgb, image.base, sizes
        self.made, self.made_contexts, self.made_counts, self.statics = {}, {}, {}, {}
        self.shape, self.act, self.where, self.zigzag, self.second, self.offset, self.gains = (
            image.shape, image.act, image.where, image.zigzag, image.second, image.offset, image.gains)
        self.coefficients = select(sizes, image.residual)
        self.magnitudes = tuple(select(sizes, {n: m[i] for n, m in image.magnitudes.items()}) for i in (0, 1))

    def write_head(self, coder) -> None:
        write_layout(coder, self.sizes)
        super().write_head(coder)

    def pixels(self, q: np.ndarray, step: int) -> np.ndarray:
        return reconstruct(self.base, q, step, self.gains, self.sizes)


def encode_layer(rgb: np.ndarray, base: np.ndarray, step: int, seal: int) -> tuple[bytes, np.ndarray]:
    """The payload of the layer of an image (H, W, 3) uint8 over a base reconstruction at a step
    (sixteenths), and the pixels it decodes to."""
    return Encoder(rgb, base).encode(step, seal)


def payload_limit(height: int, width: int) -> int:
    """The most bytes a layer of an image this size can need: kind 4's, plus the flags and their
    probabilities (40 bits for each of BH BW / 4 + 2: generous, a flag costs at most about 6 bits and
    there are at most 5 BH BW / 16 of them)."""
    bh, bw = kind2.blocks_shape(height, width)
    return kind4.payload_limit(height, width) + 4 * math.ceil(40 * (bh * bw // 4 + 2) / 32)


def decode_layer(payload, base: np.ndarray, step: int, seal: int) -> np.ndarray:
    """Inverse of `encode_layer`: the pixels of a payload over its base. ValueError unless the
    payload is exactly such an encoding (within `payload_limit`, never dry, ending in the seal)."""
    h, w = base.shape[:2]
    shape = kind2.blocks_shape(h, w)
    coder = open_layer(payload, payload_limit(h, w))
    gains = kind4.read_gains(coder)
    sizes = read_layout(coder, shape)
    index = read_tables(coder, CONTEXTS)
    q = kind4.walk(shape, static_energy(base, sizes, step), kind2.symbol_reader(coder, index))
    check_end(coder, seal)
    return reconstruct(base, q, step, gains, sizes)
