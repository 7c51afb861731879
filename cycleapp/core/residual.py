"""The enhancement layer (format 9): what the learned code missed, coded in the pixel domain.

The learned code keeps 320 of a 16x16 RGB block's 768 values, so however fine its steps it cannot
pass about 40 dB, and scaling them finer still runs its symbols out of the tables' range. High
rates, near-lossless and lossless files therefore add a second layer, after the lossy-plus-residual
design of Bai et al. (arXiv:2103.17015): the difference between the image and the base layer's
reconstruction, quantised in the pixel domain with one uniform step and entropy-coded under
contexts. A step of 2N + 1 keeps every pixel of every channel within N of the original
(near-lossless, as JPEG-LS promises), a step of 1 is lossless, and any step in between sets the
rate (steps are stored in sixteenths, `STEP_UNIT`).

Coding. Green is coded first, then red and blue. A channel's positions come coarse to fine in seven
passes (`subpasses`): every 4th row and column, then the centres and the edges of that grid's
squares, then those of the 2-pixel grid, so that every pass decodes at once and all but the first
predict each position from four decoded neighbours (their mean, where the flag says so); red and
blue also add a share (a gain per channel, chosen by the encoder) of green's innovation at that
pixel: the base's errors are mostly in luma, so the three channels' residuals move together. A
symbol's context is a bucket of an integer energy: the base reconstruction's local gradients (known
to the decoder before any residual), the decoded neighbours' spread, and for red and blue green's
innovation, all in units of the step.

Tables. Every context's symbols are coded with a two-sided geometric table (the discrete Laplace
of JPEG-LS), one of SCALES built with exact arithmetic (`tables`), so that every machine builds
the very same numbers and the coder needs nothing stored. Which table each context uses is chosen
per image by the encoder (the one that codes that context's symbols in the fewest bits) and
written at the head of the stream, each as its difference from the previous context's.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import constriction
import numpy as np

from cycleapp.core.entropy import check_not_dry, runs, words

STEP_UNIT = 16  # steps are stored in sixteenths of a pixel value
MIN_STEP, MAX_STEP = STEP_UNIT, 255 * STEP_UNIT  # lossless; about every residual at zero
RADIUS = 255  # |symbol| at most: a prediction error within a pixel's range, at step 1
ALPHABET = 2 * RADIUS + 1
GREEN, ORDER = 1, (1, 0, 2)  # channels in decoding order: green, then red and blue
LEVELS = 2  # the coarsest grid holds every 4th row and column; each level halves the spacing
KINDS = 1 + 2 * LEVELS  # the coarsest grid, then each level's centres and edges
BUCKETS = 12  # energy buckets per (channel, kind of pass)
CONTEXTS = len(ORDER) * KINDS * BUCKETS
SCALES = 82  # tables: theta = (19/16)^j / 4096, the mean magnitude from about 0.0002 to 300
FLOOR = Fraction(1, 2 ** 40)  # the least weight of a symbol in any table, so that every one can be coded
GAINS = 9  # red's and blue's prediction add g/8 of green's innovation, g in 0..8
PREDICTED_UP_TO = 16 * STEP_UNIT  # the encoder predicts from the neighbours at this step and finer
ACTIVITY_SHIFT = 2  # the base's gradients count a quarter against the neighbours' spread


def max_error(step: int) -> int:
    """The largest error a pixel can have at a step (in sixteenths): half a whole step, rounded
    down (N for a step of 2N + 1); half a fractional one, rounded up with the reconstruction's own
    rounding."""
    return step // (2 * STEP_UNIT) if step % STEP_UNIT == 0 else (step + STEP_UNIT) // (2 * STEP_UNIT)


def near_lossless_step(n: int) -> int:
    """The step (in sixteenths) that keeps every pixel within n of the original: 2n + 1."""
    return (2 * n + 1) * STEP_UNIT


def quantize(error: np.ndarray, step: int) -> np.ndarray:
    """Integer prediction errors -> symbols round(error / step), halves toward zero (at a step of
    2, halves away from zero would make every odd error a non-zero symbol)."""
    e = error.astype(np.int64)
    return np.sign(e) * ((2 * STEP_UNIT * np.abs(e) + step - 1) // (2 * step))


def dequantize(q: np.ndarray, step: int) -> np.ndarray:
    """What a symbol adds to its prediction: q * step, rounded to an integer, halves away from zero."""
    v = q.astype(np.int64) * step
    return np.sign(v) * ((np.abs(v) + STEP_UNIT // 2) // STEP_UNIT)


@functools.cache
def tables() -> tuple[np.ndarray, np.ndarray]:
    """The SCALES tables (SCALES, ALPHABET) as float64 weights, and their ideal bits per symbol.

    Table j weighs a symbol k by rho^|k| (floored at FLOOR), rho = theta / (1 + theta), theta =
    (19/16)^j / 4096 (the sharpest codes an all-zero residual in under a thousandth of a bit): computed with fractions, then each weight rounded once to float64, so every
    machine builds the same weights and constriction quantises them the same way."""
    weights = np.empty((SCALES, ALPHABET))
    floor = float(FLOOR)
    for j in range(SCALES):
        # rho = 19^j / (19^j + 16^j 4096), its powers as integer fractions (num / den): coprime, so
        # Fraction's reductions found nothing and only cost time; an int division rounds correctly,
        # as float(Fraction) does (it is that division)
        rho_num = 19 ** j
        rho_den = rho_num + (1 << (4 * j + 12))
        num, den, half = 1, 1, []
        for _ in range(RADIUS + 1):
            if num * FLOOR.denominator > den:  # power > FLOOR
                half.append(num / den)
                num, den = num * rho_num, den * rho_den
            else:
                half.append(floor)
        weights[j] = half[:0:-1] + half
    bits = -np.log2(weights / weights.sum(1, keepdims=True))
    return weights, bits


@functools.cache
def _models():
    """constriction's models: the tables, the prior of a table index's difference from the
    previous context's (P(d) ~ 2^-|d|), the uniform priors of a gain and of a flag."""
    weights, _ = tables()
    categorical = constriction.stream.model.Categorical
    d = np.arange(-(SCALES - 1), SCALES)
    prior = 2.0 ** -np.abs(d).astype(np.float64)
    return ([categorical(w / w.sum(), perfect=False) for w in weights],
            categorical(prior / prior.sum(), perfect=False),
            categorical(np.full(GAINS, 1 / GAINS), perfect=False),
            categorical(np.array([0.5, 0.5]), perfect=False))


def activity(base: np.ndarray) -> np.ndarray:
    """Per channel, the base reconstruction's absolute differences to its left and upper
    neighbours, summed over the 3x3 neighbourhood: int32 (3, H, W). The decoder has it before
    any residual."""
    b = base.astype(np.int32).transpose(2, 0, 1)
    grad = np.zeros_like(b)
    grad[:, :, 1:] += np.abs(np.diff(b, axis=2))
    grad[:, 1:, :] += np.abs(np.diff(b, axis=1))
    p = np.pad(grad, [(0, 0), (1, 1), (1, 1)])
    rows = p[:, :-2, :] + p[:, 1:-1, :] + p[:, 2:, :]
    return rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]


def subpasses():
    """The passes of a channel in decoding order, as (kind, spacing, row offset, column offset,
    neighbour offsets): the coarsest grid first (no neighbour), then per level the centres of the
    known grid's squares (their four diagonal neighbours known) and the middles of its edges (their
    four direct neighbours known), the spacing halving each level down to every pixel."""
    spacing = 1 << LEVELS
    yield 0, spacing, 0, 0, ()
    for level in range(LEVELS):
        half = spacing // 2
        diagonal = ((-half, -half), (-half, half), (half, -half), (half, half))
        direct = ((-half, 0), (half, 0), (0, -half), (0, half))
        yield 1 + 2 * level, spacing, half, half, diagonal
        yield 2 + 2 * level, spacing, 0, half, direct
        yield 2 + 2 * level, spacing, half, 0, direct
        spacing = half


MARGIN = 1 << (LEVELS - 1)  # the farthest neighbour


def bucket(energy: np.ndarray) -> np.ndarray:
    """min(bit length of the integer energy, BUCKETS - 1)."""
    e = np.minimum(energy, (1 << (BUCKETS - 1)) - 1)
    out = np.zeros(e.shape, np.int32)
    for b in range(1, BUCKETS):
        out += e >= (1 << (b - 1))
    return out


def walk_channel(ci: int, base: np.ndarray, act: np.ndarray, step: int, gain: int,
                 green_innovation: np.ndarray, code, spatial_prediction: bool = True):
    """Reconstruct the residual of the ci-th channel in decoding order (`ORDER`), pass by pass:
    each position predicted from its decoded neighbours (their mean, rounded; none if not
    `spatial_prediction`) plus, for red and blue, gain / 8 of green's innovation there, clipped to
    the pixel's range; its context from
    the energy around it; `code(ctx, prediction, rows, cols) -> symbols` gives its symbols (the
    encoder quantises, the decoder reads them). Returns the reconstructed residual (H, W) int64
    and its innovation (residual minus spatial prediction), which red and blue read of green."""
    c = ORDER[ci]
    h, w = base.shape[:2]
    b = base[..., c].astype(np.int32)
    rec = np.zeros((h + 2 * MARGIN, w + 2 * MARGIN), np.int32)  # a margin of zeros around
    inside = np.zeros_like(rec)
    inside[MARGIN:MARGIN + h, MARGIN:MARGIN + w] = 1
    innovation = np.zeros((h, w), np.int32)
    for kind, spacing, i0, j0, offsets in subpasses():
        rows, cols = len(range(i0, h, spacing)), len(range(j0, w, spacing))
        if not rows or not cols:
            continue
        where = (slice(i0, h, spacing), slice(j0, w, spacing))
        grid = lambda a, di, dj: a[MARGIN + i0 + di:MARGIN + i0 + di + spacing * (rows - 1) + 1:spacing,
                                   MARGIN + j0 + dj:MARGIN + j0 + dj + spacing * (cols - 1) + 1:spacing]
        energy = (8 * STEP_UNIT * act[c][where]) // (9 * step << ACTIVITY_SHIFT)
        if offsets and spatial_prediction:
            total = sum(grid(rec, di, dj) for di, dj in offsets)
            count = sum(grid(inside, di, dj) for di, dj in offsets)
            spatial = np.floor_divide(2 * total + count, 2 * count)
            spread = sum(np.abs(grid(rec, di, dj) - spatial) * grid(inside, di, dj) for di, dj in offsets)
            energy += (8 * STEP_UNIT * spread) // (count * step)
        else:
            spatial = np.zeros((rows, cols), np.int32)
        prediction = spatial
        if ORDER[ci] != GREEN:
            g = green_innovation[where]
            prediction = spatial + np.floor_divide(gain * g, 8)
            energy += (8 * STEP_UNIT * np.abs(g)) // step
        low, high = -b[where], 255 - b[where]
        prediction = np.clip(prediction, low, high)
        ctx = (ci * KINDS + kind) * BUCKETS + bucket(energy)
        q = code(ctx.ravel(), prediction, where).reshape(rows, cols)
        value = np.clip(prediction + dequantize(q, step), low, high)
        grid(rec, 0, 0)[...] = value
        innovation[where] = value - spatial
    return rec[MARGIN:MARGIN + h, MARGIN:MARGIN + w], innovation


def encode_layer(rgb: np.ndarray, base: np.ndarray, step: int, seal: int) -> tuple[bytes, np.ndarray]:
    """The payload of the enhancement layer of an image (H, W, 3) uint8 over a base reconstruction
    (H, W, 3) uint8 at a step (in sixteenths), and the pixels it decodes to. The coder starts from
    `seal` (see `decode_layer`). Decoding order: whether the neighbours predict (a flag), the two
    gains, the table of each context, then the channels' passes (`walk_channel`); a stack codes them
    in reverse. The neighbours predict at steps up to PREDICTED_UP_TO: at coarser steps most
    residuals round to zero, and a prediction interpolated from the few that do not spreads their
    error to positions the base had right (kodim01 at a step of 17: 5 % larger files for the
    same PSNR)."""
    residual = rgb.astype(np.int32) - base
    act = activity(base)
    spatial = step <= PREDICTED_UP_TO
    coded, out, innovation, gains = [], np.empty_like(rgb), None, []
    for ci, c in enumerate(ORDER):
        gain = 0 if c == GREEN else _gain(residual[..., c], innovation)
        gains += [gain] if c != GREEN else []

        def quantized(ctx, prediction, where):
            q = quantize(residual[..., c][where] - prediction, step).ravel()
            coded.append((ctx, q))
            return q

        rec, inn = walk_channel(ci, base, act, step, gain, innovation, quantized, spatial)
        innovation = inn if c == GREEN else innovation
        out[..., c] = (base[..., c] + rec).astype(np.uint8)
    _, _, gain_model, flag_model = _models()
    coder = constriction.stream.stack.AnsCoder(words(seal))
    write_symbols(coder, coded, choose_tables(coded))
    coder.encode_reverse(np.array(gains, np.int32), gain_model)
    coder.encode_reverse(np.array([int(spatial)], np.int32), flag_model)
    return coder.get_compressed().astype("<u4").tobytes(), out


def _gain(residual: np.ndarray, green_innovation: np.ndarray) -> int:
    """How much of green's innovation to add to a channel's prediction, in eighths (0 to 8): the
    least-squares slope of the channel's residual on it, rounded (an estimate: the channel's own
    spatial prediction is left out, as the residuals of neighbours barely predict it here)."""
    g = green_innovation.astype(np.float64).ravel()
    energy = float(g @ g)
    if energy == 0:
        return 0
    return int(np.clip(np.rint(8 * float(residual.astype(np.float64).ravel() @ g) / energy), 0, GAINS - 1))


def choose_tables(coded, contexts: int = CONTEXTS) -> np.ndarray:
    """Each context's table: the one that codes its symbols (`coded`: (contexts, symbols) pairs,
    symbols within +-RADIUS) in the fewest bits; an unused context repeats the previous one's (the
    cheapest to write)."""
    return tables_for(symbol_counts(coded, contexts))


def symbol_counts(coded, contexts: int = CONTEXTS) -> np.ndarray:
    """How often each symbol comes in each context (contexts, ALPHABET), int64, of (contexts,
    symbols) pairs as `choose_tables` takes them."""
    # one count of every pair's keys (a layer codes hundreds of groups: a count each was most of
    # a 2K photo's choice of tables)
    keys = [ctx.astype(np.intp) * ALPHABET + q + RADIUS for ctx, q in coded]
    keys = keys[0] if len(keys) == 1 else np.concatenate(keys) if keys else np.zeros(0, np.intp)
    return np.bincount(keys, minlength=contexts * ALPHABET).astype(np.int64).reshape(contexts, ALPHABET)


def tables_for(counts: np.ndarray, cost: np.ndarray | None = None) -> np.ndarray:
    """`choose_tables` from the symbols' counts (`symbol_counts`), and their bits under every
    table (counts @ tables()[1].T) if the caller has them already."""
    contexts = counts.shape[0]
    index = (counts @ tables()[1].T if cost is None else cost).argmin(1)  # (contexts, tables) -> the cheapest
    used = counts.sum(1) > 0
    previous = int(index[np.argmax(used)]) if used.any() else 0
    for i in range(contexts):
        if used[i]:
            previous = int(index[i])
        index[i] = previous
    return index


def write_symbols(coder, coded, index: np.ndarray) -> None:
    """Code (contexts, symbols) pairs in reverse, each symbol under its context's table, then the
    tables themselves (each as its difference from the previous context's), so that a decoder
    reads the tables first, then the pairs in order (`read_tables`, `read_symbols`)."""
    for ctx, q in reversed(coded):
        write_group(coder, index, ctx, q)
    coder.encode_reverse((np.diff(index, prepend=0) + SCALES - 1).astype(np.int32), _models()[1])


def write_group(coder, index: np.ndarray, ctx: np.ndarray, q: np.ndarray) -> None:
    """Code one group of symbols in reverse, each under its context's table (`index`): what
    `read_symbols` reads back."""
    values = (q + RADIUS).astype(np.int32)
    table_models = _models()[0]
    for t, positions in reversed(list(runs(index[ctx].astype(np.int16)))):
        coder.encode_reverse(values[positions], table_models[t])


def read_tables(coder, contexts: int) -> np.ndarray:
    """The table of each context, as `write_symbols` wrote them; ValueError if one does not exist."""
    index = np.cumsum(coder.decode(_models()[1], contexts).astype(np.int64) - (SCALES - 1))
    check_not_dry(coder)
    if index.min() < 0 or index.max() >= SCALES:
        raise ValueError("payload names a table that does not exist")
    return index


def read_symbols(coder, index: np.ndarray, ctx: np.ndarray) -> np.ndarray:
    """The symbols (int64) at positions of these contexts, in order; ValueError if the payload
    runs dry."""
    table_models = _models()[0]
    values = np.empty(ctx.size, np.int64)
    for t, positions in runs(index[ctx].astype(np.int16)):
        values[positions] = coder.decode(table_models[t], len(positions))
    check_not_dry(coder)
    return values - RADIUS


def open_layer(payload, limit: int):
    """A coder over a layer's payload (bytes or a buffer): ValueError unless it is whole 32-bit words,
    at least the two of a final state and at most `limit` bytes."""
    if len(payload) % 4 or len(payload) < 8 or len(payload) > limit:
        raise ValueError(f"a layer of {len(payload)} bytes (whole 32-bit words, 8 to {limit:,} bytes)")
    stream = np.frombuffer(payload, dtype="<u4").astype(np.uint32)  # a copy: aligned words
    if stream[-1] == 0:
        raise ValueError("payload does not end in a coder state")
    return constriction.stream.stack.AnsCoder(stream)


def check_end(coder, seal: int) -> None:
    """A payload must end in exactly the state its encoder began from, nothing left."""
    if coder.num_words() != 2:
        raise ValueError("payload has data left after the last symbol")
    low, high = (int(word) for word in coder.get_compressed())
    if low | high << 32 != seal:
        raise ValueError("payload does not end where its encoder began")


def payload_limit(height: int, width: int) -> int:
    """The most bytes a payload of an image this size can need (every symbol at the floor's 40
    bits, the side information at 8 bits a context), so that a larger one is refused unread."""
    return 4 * math.ceil((40 * 3 * height * width + 8 * CONTEXTS + 64) / 32) + 8


def decode_layer(payload, base: np.ndarray, step: int, seal: int) -> np.ndarray:
    """Inverse of `encode_layer`: the pixels (H, W, 3) uint8 of a payload over its base. ValueError
    unless the payload is exactly such an encoding: within `payload_limit`, never running dry,
    ending in exactly the seal."""
    h, w = base.shape[:2]
    coder = open_layer(payload, payload_limit(h, w))
    _, _, gain_model, flag_model = _models()
    spatial = bool(coder.decode(flag_model, 1)[0])
    gains = coder.decode(gain_model, len(ORDER) - 1)
    index = read_tables(coder, CONTEXTS)
    act = activity(base)
    read = lambda ctx, prediction, where: read_symbols(coder, index, ctx)

    out, innovation = np.empty_like(base), None
    for ci, c in enumerate(ORDER):
        gain = 0 if c == GREEN else int(gains[ci - 1])
        rec, inn = walk_channel(ci, base, act, step, gain, innovation, read, spatial)
        innovation = inn if c == GREEN else innovation
        out[..., c] = (base[..., c] + rec).astype(np.uint8)
    check_end(coder, seal)
    return out
