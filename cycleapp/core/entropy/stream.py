"""The payload: the order in which a code's symbols are coded, and the ANS coder that writes and
reads them under the coding tables (`encode`, `decode`).

The stream decodes as: a flag, then, if it is set, the per-image table moves (each as the
difference from the previous channel's, under a fixed prior that makes equal moves cheap: P(d) ~
ADAPT_RATIO ** -|d|); the DC a row at a time (its contexts read the row above); then each channel
group after the DC (`order`) in its four passes, CHUNK channels at a time, each chunk's symbols in
runs that share a table (few calls to constriction, bounded temporaries). The decoder reads the
moves first, so the tables of every symbol are known before it.

The stream is one constriction ANS stack started from a "seal" (a state in [2^32, 2^33) that the
container derives from its header) instead of an empty coder: the decoder must consume the payload
exactly, ending in that very state, so a payload that runs dry, one with data left over, or one
under a header it was not written for is refused rather than decoded to some image. Memory stays
bounded: the coder keeps int16 symbols and the weighted magnitude sums below each group, and
computes the contexts a chunk of channels at a time.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import constriction
import numpy as np
import torch

from .context_rule import PASSES, activity_context, dc_contexts, groups, in_pass, pass_contexts, weighted_sum
from .prediction import AC_CLAMP, DC_CLAMP, from_residuals, residuals

if TYPE_CHECKING:
    from .tables import CodingTables

PRECISION = 24  # constriction's Categorical models: probabilities in units of 2^-24
DEFAULT_SEAL = 1 << 32  # the coder's initial state when the caller has no header to bind it to
CHUNK = 16  # channels whose symbols the coder sorts by table together
ADAPT_RANGE = 8  # per image, each channel's tables may move this many grid steps either way
ADAPT_RATIO = 2.0  # the prior of a channel's move relative to the one before: P(d) ~ 2 ** -|d|
_PRIOR = ADAPT_RATIO ** -np.abs(np.arange(-2 * ADAPT_RANGE, 2 * ADAPT_RANGE + 1)).astype(np.float64)
DIFFERENCE_BITS = -np.log2(_PRIOR / _PRIOR.sum())  # of a move's difference d, at d + 2 * ADAPT_RANGE
MOVE_MODEL = constriction.stream.model.Categorical(_PRIOR / _PRIOR.sum(), perfect=False)
FLAG_MODEL = constriction.stream.model.Categorical(np.array([0.5, 0.5]), perfect=False)


def order(channels: int):
    """The coding order after the DC, as (group [start, end), passes): each channel group's
    PASSES passes over its positions (`phases`), each as (pass k, chunks): CHUNK channels at a
    time."""
    for start, end in groups(channels):
        yield start, end, [(k, [(lo, min(lo + CHUNK, end)) for lo in range(start, end, CHUNK)])
                           for k in range(PASSES)]


def channel_symbols(tables: CodingTables, code: np.ndarray, start: int, end: int) -> np.ndarray:
    """The symbols of channels [start, end) of an integer code (C, H, W), as int16, a few channels
    at a time so that the temporaries stay small; ValueError if one is outside the tables."""
    out = np.empty((end - start, *code.shape[1:]), np.int16)
    for lo in range(start, end, 8):
        hi = min(lo + 8, end)
        part = torch.from_numpy(np.asarray(code[lo:hi], dtype=np.int32))[None]
        symbols = residuals(part, tables.predictor[lo:hi])[0].numpy()
        radius = 4 * DC_CLAMP if lo == 0 else AC_CLAMP
        if symbols.size and np.abs(symbols).max() > radius:
            raise ValueError("code outside the coding tables' range (clamp it first)")
        out[lo - start:hi - start] = symbols
    return out


def _weighted(tables: CodingTables, symbols: np.ndarray, start: int) -> torch.Tensor:
    """The activity-weighted magnitudes of the symbols of channels start, start + 1, ... (C, H, W),
    summed over the channels (`weighted_sum`): int64 (1, H, W)."""
    magnitudes = torch.from_numpy(symbols).to(torch.int64).abs()[None]
    return weighted_sum(magnitudes, tables.activity[start:start + len(symbols)])


def _chunk_contexts(shared: torch.Tensor, symbols: np.ndarray, k: int) -> np.ndarray:
    """`pass_contexts` of a chunk of channels at the positions of pass k, from their group's
    `activity_context` (1, H, W) and their int16 symbols (C, H, W): (1, positions) in the first
    pass, (C, positions) in the others."""
    ctx = pass_contexts(shared, torch.from_numpy(symbols).to(torch.int32).abs()[None], k)[0]
    return ctx.flatten(1).numpy()


def coded_after_dc(tables: CodingTables, code: np.ndarray):
    """The symbols after the DC in the order the stack codes them, the reverse of the decoding
    order (`order`): (lo, hi, ctx, values) per chunk of channels [lo, hi) and pass, with the
    chunk's contexts and symbols there (hi - lo, positions) each. The groups are visited from
    the last, each with the weighted magnitudes summed over the channels below it."""
    c_total = code.shape[0]
    below = [_weighted(tables, channel_symbols(tables, code, 0, 1), 0)]  # summed below each group
    for start, end in groups(c_total)[:-1]:
        below.append(below[-1] + _weighted(tables, channel_symbols(tables, code, start, end), start))
    for (start, end, passes), lower in reversed(list(zip(order(c_total), below))):
        symbols = channel_symbols(tables, code, start, end)
        shared = activity_context(lower)
        for phase, chunks in reversed(passes):
            for lo, hi in reversed(chunks):
                # the channel's own magnitudes are read only where an earlier pass decoded them
                ctx = _chunk_contexts(shared, symbols[lo - start:hi - start], phase)
                yield lo, hi, ctx, symbols[(slice(lo - start, hi - start), *in_pass(phase))].reshape(hi - lo, -1)


def runs(table: np.ndarray):
    """Positions of a flat array of table indices grouped into runs that share a table: (table,
    positions), tables in increasing order, positions in order within each (one constriction call
    per run)."""
    order = np.argsort(table, kind="stable")
    counts = np.bincount(table)
    ends = np.cumsum(counts)
    for k in np.flatnonzero(counts):
        yield int(k), order[ends[k] - counts[k]:ends[k]]


def _batches(index: np.ndarray, ctx: np.ndarray, start: int, end: int):
    """The symbols of channels [start, end) at some positions in `runs` that share a table, under
    the table indices `index` (channels - 1, CONTEXTS). ctx: their contexts there (end - start,
    positions)."""
    rows = np.arange(end - start).reshape(-1, 1)
    return runs(index[start - 1:end - 1].astype(np.int16)[rows, ctx].ravel())


def move_symbols(moves: np.ndarray) -> np.ndarray:
    """The symbols of table moves in the stream: each move's difference from the previous one's."""
    return np.diff(moves, prepend=0).astype(np.int32) + 2 * ADAPT_RANGE


def moves_bits(moves: np.ndarray) -> float:
    """What the moves cost at the head of the stream: the flag, then their differences."""
    return 1.0 + (float(DIFFERENCE_BITS[move_symbols(moves)].sum()) if moves.any() else 0.0)


def words(seal: int) -> np.ndarray:
    """A coder state in [2^32, 2^64) as the two words constriction reads it from (low, high)."""
    return np.array([seal & 0xFFFFFFFF, seal >> 32], dtype=np.uint32)


def check_not_dry(coder) -> None:
    """In a stream sealed with a state >= 2^32 the state stays >= 2^32 while there are symbols to
    decode; once the data runs out it falls below and stays there (constriction keeps decoding)."""
    if coder.num_valid_bits() < 32:
        raise ValueError("payload ran out before the last symbol")


def encode(tables: CodingTables, code: np.ndarray, moves, seal: int = DEFAULT_SEAL, chunks=None) -> bytes:
    """The payload of an integer code (C, H, W), already clamped, with the per-image table moves
    `moves` (C - 1,), the coder started from the state `seal` (see `decode`); chunks: the code's
    `coded_after_dc`, if the caller has them. A stack codes the stream in reverse."""
    c_total, h, w = code.shape
    moves = np.asarray(moves)
    whole = moves.dtype.kind in "iu"
    if moves.shape != (c_total - 1,) or not whole or np.abs(moves).max(initial=0) > ADAPT_RANGE:
        raise ValueError(f"an adaptation is {c_total - 1} table moves within +-{ADAPT_RANGE}")
    index = tables.shifted(moves).index
    coder = constriction.stream.stack.AnsCoder(words(seal))
    for lo, hi, ctx, values in coded_after_dc(tables, code) if chunks is None else chunks:
        values = values.ravel().astype(np.int32) + AC_CLAMP
        for k, positions in reversed(list(_batches(index, ctx, lo, hi))):
            coder.encode_reverse(values[positions], tables.models[k])
    dc = channel_symbols(tables, code, 0, 1)[0]
    dc_ctx = dc_contexts(torch.from_numpy(dc.astype(np.int64))).numpy()
    for row in reversed(range(h)):
        values = dc[row].astype(np.int32) + 4 * DC_CLAMP
        for k, positions in reversed(list(runs(dc_ctx[row]))):
            coder.encode_reverse(values[positions], tables.dc_models[k])
    if moves.any():
        coder.encode_reverse(move_symbols(moves), MOVE_MODEL)
    coder.encode_reverse(np.array([int(moves.any())], np.int32), FLAG_MODEL)
    return coder.get_compressed().astype("<u4").tobytes()


def decode(tables: CodingTables, payload, shape: tuple[int, int, int], seal: int | None = None) -> np.ndarray:
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
    if c_total != tables.channels:
        raise ValueError(f"code has {c_total} channels, the tables {tables.channels}")
    if len(payload) % 4:
        raise ValueError("payload length is not a multiple of 4")
    least, most = payload_bits(tables, shape)
    if not least <= 8 * len(payload) <= most:
        raise ValueError(f"a payload of {len(payload)} bytes cannot hold a {c_total}x{h}x{w} code "
                         f"({math.ceil(least / 8)} to {most // 8} bytes)")
    # a copy: the payload sits at an odd offset in the file, and constriction needs aligned words
    data = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    if len(data) < 2 or data[-1] == 0:
        raise ValueError("payload does not end in a coder state")
    coder = constriction.stream.stack.AnsCoder(data)
    moves = np.zeros(c_total - 1, np.int64)
    if coder.decode(FLAG_MODEL, 1)[0]:
        moves = np.cumsum(coder.decode(MOVE_MODEL, c_total - 1).astype(np.int64) - 2 * ADAPT_RANGE)
    check_not_dry(coder)  # moves read past the data are no moves at all
    if np.abs(moves).max(initial=0) > ADAPT_RANGE:
        raise ValueError("payload moves a channel's tables out of range")
    index = tables.shifted(moves).index
    dc = np.zeros((h, w), np.int16)
    for row in range(h):  # the DC a row at a time: its contexts read the row above
        ctx = dc_contexts(torch.from_numpy(dc[max(row - 1, 0):row + 1].astype(np.int64)))[-1].numpy()
        for k, positions in runs(ctx):
            dc[row, positions] = coder.decode(tables.dc_models[k], len(positions)) - 4 * DC_CLAMP
    check_not_dry(coder)  # a payload too small for the DC alone ends here, before the whole code exists
    symbols = np.zeros((c_total, h, w), np.int16)  # then the code, in place
    symbols[0] = dc
    lower = _weighted(tables, dc[None], 0)
    del dc
    for start, end, passes in order(c_total):
        shared = activity_context(lower)
        for phase, chunks in passes:
            for lo, hi in chunks:  # the first pass's contexts read no symbol of the group, the others' earlier passes
                ctx = _chunk_contexts(shared, symbols[lo:hi], phase)
                values = np.empty((hi - lo) * ctx.shape[1], np.int16)
                for k, positions in _batches(index, ctx, lo, hi):
                    decoded = coder.decode(tables.models[k], len(positions))
                    decoded -= AC_CLAMP
                    values[positions] = decoded
                target = symbols[(slice(lo, hi), *in_pass(phase))]
                target[...] = values.reshape(target.shape)
            check_not_dry(coder)
        lower += _weighted(tables, symbols[start:end], start)
    if coder.num_words() != 2:
        raise ValueError("payload has data left after the last symbol")
    low, high = (int(word) for word in coder.get_compressed())
    if not (low | high << 32 == seal if seal is not None else high == 1):
        raise ValueError("payload does not end where its encoder began (data left over, or "
                         "a header it was not written for)")
    return _to_code(tables, symbols)


def _to_code(tables: CodingTables, symbols: np.ndarray) -> np.ndarray:
    """Undo the prediction in place, a channel at a time; ValueError for a value outside the
    range every encoder clamps to."""
    predictor, limits = tables.predictor.numpy(), tables.limits.view(-1).numpy()
    for c in range(len(symbols)):
        plane = from_residuals(symbols[c:c + 1].astype(np.int64), predictor[c:c + 1])[0]
        if plane.size and np.abs(plane).max() > limits[c]:
            raise ValueError("decoded code outside the range any encoder writes")
        symbols[c] = plane
    return symbols


def payload_bits(tables: CodingTables, shape: tuple[int, int, int]) -> tuple[float, int]:
    """Bounds on the payload bits of any code of this shape (C, H, W), from the tables alone.

    At least: every symbol costs at least -log2 of the highest probability in any table it may
    be coded with (its channel's narrowest table over all contexts and table moves); half of
    that sum, a wide margin for constriction's rounding of the probabilities. At most: PRECISION
    bits a symbol, the moves included (no probability is below 2^-PRECISION), plus one, plus the
    sealed coder's two words."""
    c, h, w = shape
    # whatever moves the stream holds (a narrower table's likeliest symbol costs fewer bits)
    narrowest = tables.shifted(ADAPT_RANGE).index
    dc_least = -math.log2(tables.dc_probabilities.max())  # of the most probable symbol of any
    ac_least = tables.ac_bits.min(1).values.numpy()  # per table
    per_position = dc_least + ac_least[narrowest].min(1).sum()
    return 0.5 * h * w * per_position, (PRECISION + 1) * (c * h * w + c + 1) + 64
