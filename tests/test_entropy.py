"""Spatial prediction in the entropy coder: exact, causal, and chosen where it pays."""
import math

import numpy as np
import pytest
import torch

from conftest import EXAMPLES
from cycleapp.core.entropy import stream
from cycleapp.core.entropy import (AC_CLAMP, ACTIVITY_WEIGHT_MAX, ADAPT_RANGE, DC_CLAMP, DC_CONTEXTS, DEFAULT_SEAL, LAPLACE,
                              LIKELIHOOD_FLOOR, MED, PLANAR, PREDICTORS, SCALES, SHAPES, CodingTables, EntropyModel, ac_tables,
                              activity_weights, choose_predictors, dc_contexts, from_residuals, laplace_likelihood,
                              in_pass, residuals, scale_grid)


def random_code(channels=6, h=7, w=9, spread=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-spread, spread + 1, (1, channels, h, w), generator=g)


@pytest.mark.parametrize("kind", range(len(PREDICTORS)))
def test_residuals_invert_exactly(kind):
    code = random_code()
    predictor = torch.full((code.shape[1],), kind)
    symbols = residuals(code, predictor)
    assert torch.equal(torch.from_numpy(from_residuals(symbols[0].numpy(), predictor.numpy())), code[0])
    if kind:
        assert not torch.equal(symbols, code)


@pytest.mark.parametrize("kind", range(1, len(PREDICTORS)))
def test_a_symbol_reads_only_its_left_and_upper_neighbours(kind):
    """Changing one code value changes the symbols at that position and at most the three positions
    that predict from it (right, below, below-right): each symbol depends on decoded values only."""
    code = random_code(channels=2)
    predictor = torch.full((2,), kind)
    changed = code.clone()
    changed[0, 1, 3, 4] += 5
    diff = (residuals(changed, predictor) != residuals(code, predictor))[0, 1].nonzero().tolist()
    assert [3, 4] in diff
    assert all(i in (3, 4) and j in (4, 5) for i, j in diff)
    assert not (residuals(changed, predictor) != residuals(code, predictor))[0, 0].any()


def test_a_dc_context_reads_only_the_row_above():
    """Changing one DC residual changes the contexts of the three positions below it and nothing
    else; a row's contexts from the rows decoded so far are its contexts in the whole code."""
    dc = random_code(channels=1, h=8, w=10, spread=2)[0, 0]
    changed = dc.clone()
    changed[3, 4] += 300
    diff = (dc_contexts(changed) != dc_contexts(dc)).nonzero().tolist()
    assert diff and all(i == 4 and j in (3, 4, 5) for i, j in diff)
    whole = dc_contexts(dc)
    for row in range(dc.shape[0]):
        assert torch.equal(dc_contexts(dc[max(row - 1, 0):row + 1])[-1], whole[row])
    assert int(whole[0].max()) == 0 and int(dc_contexts(changed).max()) == DC_CONTEXTS - 1


def test_the_dc_is_coded_under_its_context():
    """With a narrow DC density for the quiet context and wide ones elsewhere, a code whose DC is flat
    but for one busy row round-trips exactly and costs less than under the wide density everywhere."""
    density = EntropyModel(3)
    dc, ac, index, predictor, activity = density.tables()
    symbols = torch.arange(-4 * DC_CLAMP, 4 * DC_CLAMP + 1, dtype=torch.float64)
    narrow, wide = (torch.exp(-symbols.abs() / s) for s in (0.3, 30.0))
    tables = {name: CodingTables(torch.stack([first] + [wide] * (DC_CONTEXTS - 1)).float(), ac, index, predictor,
                                 activity)
              for name, first in (("context", narrow / narrow.sum()), ("wide", wide / wide.sum()))}
    code = np.zeros((3, 12, 16), np.int64)
    code[0, 6] = np.random.default_rng(0).integers(-200, 200, 16)  # a busy row in a flat DC
    sizes = {}
    for name, t in tables.items():
        data = t.encode(code)
        assert np.array_equal(t.decode(data, code.shape), code)
        sizes[name] = len(data)
    assert sizes["context"] < 0.8 * sizes["wide"]


def test_predictors_are_chosen_where_they_pay():
    """A channel that drifts slowly along the rows gets the left predictor; white noise gets none;
    channel 0 is always predicted."""
    g = torch.Generator().manual_seed(1)
    code = torch.zeros(4, 3, 16, 16, dtype=torch.int64)
    code[:, 1] = torch.randint(-1, 2, (4, 16, 16), generator=g).cumsum(2) + 40
    code[:, 2] = torch.randint(-9, 10, (4, 16, 16), generator=g)
    chosen = choose_predictors(code)
    assert chosen[0] == PLANAR
    assert PREDICTORS[int(chosen[1])] == "left"
    assert PREDICTORS[int(chosen[2])] == "none"


def test_the_dc_predictor_is_planar_on_a_ramp_and_med_on_a_photograph():
    """Planar predicts a sum of a row profile and a column profile exactly (med does not); next to a
    photograph's edges med errs less, so the DC of a photograph (its 16x16 block means) gets med."""
    from PIL import Image

    g = torch.Generator().manual_seed(2)
    rows, columns = torch.randint(-30, 31, (24, 1), generator=g), torch.randint(-30, 31, (1, 32), generator=g)
    assert int(choose_predictors((rows + columns)[None, None])[0]) == PLANAR
    photo = torch.from_numpy(np.array(Image.open(EXAMPLES / "kodim23.png").convert("L"), np.float32))
    blocks = torch.nn.functional.avg_pool2d(photo[None, None], 16).round().long()
    assert int(choose_predictors(blocks)[0]) == MED


def test_coding_with_predictors_round_trips_at_the_limits():
    """Every predictor, values up to each channel's limit: decode(encode(code)) is the code."""
    density = EntropyModel(6)
    density.predictor.copy_(torch.tensor([MED, 1, 2, PLANAR, MED, 1]))
    tables = CodingTables(*density.tables())
    code = random_code(spread=AC_CLAMP)
    code = tables.clamp(code)
    assert int(code[0, 3].abs().max()) == AC_CLAMP // 4 and int(code[0, 1].abs().max()) == AC_CLAMP // 2
    assert int(code[0, 4].abs().max()) == AC_CLAMP // 2
    assert int(tables.symbols(code).abs().max()) <= AC_CLAMP * 4
    data = tables.encode(code[0].numpy())
    assert np.array_equal(tables.decode(data, tuple(code.shape[1:])), code[0].numpy())


def test_inconsistent_tables_predictors_and_activity_weights_are_refused():
    density = EntropyModel(4)
    dc, ac, index, predictor, activity = density.tables()
    CodingTables(dc, ac, index, predictor, activity)
    with pytest.raises(ValueError, match="inconsistent"):
        CodingTables(dc, ac, index, torch.tensor([PLANAR, 0, 7, 0], dtype=torch.int16), activity)
    with pytest.raises(ValueError, match="inconsistent"):
        CodingTables(dc, ac, index, torch.tensor([0, 0, 0, 0], dtype=torch.int16), activity)
    with pytest.raises(ValueError, match="inconsistent"):
        CodingTables(dc, ac, index, predictor[:3], activity)
    for wrong in (activity[:3], torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, ACTIVITY_WEIGHT_MAX + 1, 1])):
        with pytest.raises(ValueError, match="inconsistent"):
            CodingTables(dc, ac, index, predictor, wrong.to(torch.int16))
    with pytest.raises(ValueError, match="inconsistent"):  # format 6's 64 Laplace tables
        CodingTables(dc, ac[LAPLACE * SCALES:(LAPLACE + 1) * SCALES], index, predictor, activity)
    with pytest.raises(ValueError, match="inconsistent"):  # a table beyond the last shape's
        CodingTables(dc, ac, torch.full_like(index, len(SHAPES) * SCALES), predictor, activity)


def test_the_tables_are_generalised_gaussians_with_the_laplace_among_them():
    """Shape 1 is the Laplace that training fits, at the same scales; every table is a distribution
    over the symbols (a wide one with heavy tails loses some mass beyond the clamp); a sharper shape
    at the same scale puts more of its mass far out. The far tails are computed, not rounded away:
    down to LIKELIHOOD_FLOOR they match the density, and nothing is below it (a bit count read from
    the tables never rates a rare value at hundreds of bits)."""
    tables = ac_tables().double()
    support = torch.arange(-AC_CLAMP, AC_CLAMP + 1, dtype=torch.float64)
    laplace = torch.stack([laplace_likelihood(support, s) for s in scale_grid()]).float().double()
    assert torch.allclose(tables[LAPLACE * SCALES:(LAPLACE + 1) * SCALES], laplace, rtol=1e-6, atol=0)
    floor = torch.tensor(LIKELIHOOD_FLOOR, dtype=torch.float32).item()
    assert tables.min() == floor
    assert (tables.sum(1) <= 1 + 2 * AC_CLAMP * LIKELIHOOD_FLOOR + 1e-6).all()  # the floor adds a little
    narrow = (tables.view(len(SHAPES), SCALES, -1)[:, :32].sum(-1) - 1).abs()  # scales up to about 2.4
    assert (narrow < 3e-6).all()
    beyond = tables.view(len(SHAPES), SCALES, -1)[:, 20, support.abs() > 20].sum(-1)  # at scale 0.6 or so
    assert (beyond[:-1] > beyond[1:]).all()
    # one table of another shape against the density integrated over each integer's bin, numerically
    shape, scale = SHAPES[1], float(scale_grid()[30])
    x = support[:, None] + torch.linspace(-0.5, 0.5, 2001, dtype=torch.float64)
    density = torch.exp(-(x.abs() / scale) ** shape) / (2 * scale * math.gamma(1 + 1 / shape))
    numeric = torch.trapezoid(density, dx=1 / 2000)
    table = tables[SCALES + 30]
    far = support.abs() > 100
    assert (numeric[far] > LIKELIHOOD_FLOOR).any() and (numeric[far] < 1e-12).any()  # both ends of the tail
    above = numeric > LIKELIHOOD_FLOOR
    assert torch.allclose(table[above], numeric[above], rtol=1e-4)
    assert (table[~above] == floor).all()


def test_activity_weights_even_out_the_channels():
    """A channel's weight is about 64 over its mean magnitude, within [1, ACTIVITY_WEIGHT_MAX]: a busy
    channel and a sparse one then count alike in the activity of a context."""
    symbols = torch.zeros(2, 4, 8, 8, dtype=torch.int64)
    symbols[:, 0] = 32  # mean 32: weight 2
    symbols[:, 1, ::2] = 1  # mean 1/2: weight 128
    symbols[:, 2] = 1000  # weight 64 / 1000 rounds to 0: at least 1
    weights = activity_weights(symbols)  # channel 3 is all zeros: the most
    assert weights.tolist() == [2, 128, 1, ACTIVITY_WEIGHT_MAX]


def small_tables(channels=20):
    """Coding tables of a fresh entropy model: every predictor in turn, random scales and shapes."""
    density = EntropyModel(channels)
    density.predictor.copy_(torch.tensor([PLANAR] + [k % len(PREDICTORS) for k in range(channels - 1)]))
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        density.log_scale.copy_(torch.randn(density.log_scale.shape, generator=g))
        density.activity.copy_(torch.randint(1, ACTIVITY_WEIGHT_MAX + 1, (channels,), generator=g))
        density.shape_index.copy_(torch.randint(len(SHAPES), density.shape_index.shape, generator=g))
    return CodingTables(*density.tables())


def test_the_bits_of_symbols_are_read_from_the_stored_probabilities():
    """`CodingTables.bits` (and `dc_bits`), which RDOQ, the moves and the training tools count with,
    are -log2 of the probabilities the coder hands constriction, for torch and numpy alike; a symbol
    at the edge of the range counts under the same table as any other."""
    tables = small_tables()
    g = torch.Generator().manual_seed(3)
    table = torch.randint(0, len(tables.ac_probabilities), (50,), generator=g)
    symbols = torch.randint(-AC_CLAMP, AC_CLAMP + 1, (50,), generator=g)
    symbols[:2] = torch.tensor([-AC_CLAMP, AC_CLAMP])
    minus_log2 = lambda p: -np.log2(np.maximum(p, 1e-300))  # a zero probability is a finite cost
    expected = minus_log2(tables.ac_probabilities[table.numpy(), symbols.numpy() + AC_CLAMP])
    assert np.array_equal(tables.bits(table, symbols).numpy(), expected)
    assert np.array_equal(tables.bits(table.numpy(), symbols.numpy()), expected)
    dc = torch.randint(-4 * DC_CLAMP, 4 * DC_CLAMP + 1, (5, 6), generator=g)
    expected = minus_log2(tables.dc_probabilities[dc_contexts(dc).numpy(), dc.numpy() + 4 * DC_CLAMP])
    assert (tables.dc_probabilities == 0).any()  # a fresh DC density has zeros far out
    assert np.array_equal(tables.dc_bits(dc).numpy(), expected)
    assert np.array_equal(tables.dc_bits(dc.numpy()), expected)


@pytest.mark.parametrize("h, w", [(1, 1), (1, 5), (2, 3), (5, 7)])
def test_the_coder_codes_each_symbol_once_under_the_models_context(h, w):
    """The encoder's chunks, in the stack's order (the decoding order reversed), hold every symbol
    after the DC once, each under the context that training and calibration compute (`contexts`),
    whatever the code's shape (passes without positions included)."""
    tables = small_tables(channels=40)
    code = tables.clamp(random_code(channels=40, h=h, w=w, spread=6))[0].numpy()
    symbols = tables.symbols(torch.from_numpy(code)[None].long())[0]
    ctx = tables.contexts(symbols[None])[0]
    order = [(lo, hi, k) for _, _, passes in stream.order(40) for k, chunks in passes for lo, hi in chunks][::-1]
    coded = list(stream.coded_after_dc(tables, code))
    assert [(lo, hi) for lo, hi, _, _ in coded] == [(lo, hi) for lo, hi, _ in order]
    for (lo, hi, chunk_ctx, values), (_, _, k) in zip(coded, order):
        at = (slice(lo, hi), *in_pass(k))
        assert np.array_equal(np.broadcast_to(chunk_ctx, values.shape), ctx[at].reshape(hi - lo, -1).numpy())
        assert np.array_equal(values, symbols[at].reshape(hi - lo, -1).numpy())


def test_a_payload_must_be_consumed_exactly():
    """The coder is sealed: a payload whose first words (the last it reads) are missing runs dry, one
    with words before them leaves data, one decoded under another seal (another header) ends in
    the wrong state; each is refused as such, never decoded to some code."""
    tables = small_tables()
    code = tables.clamp(random_code(channels=20, h=9, w=11, spread=6))[0].numpy()
    payload = tables.encode(code, seal=(1 << 32) + 12345)
    assert np.array_equal(tables.decode(payload, code.shape, seal=(1 << 32) + 12345), code)
    assert np.array_equal(tables.decode(payload, code.shape), code)  # no header: any seal
    with pytest.raises(ValueError, match="ran out"):
        tables.decode(payload[4:], code.shape)
    with pytest.raises(ValueError, match="left after the last symbol"):
        tables.decode(b"\x07\x00\x00\x00" + payload, code.shape)
    with pytest.raises(ValueError, match="does not end where its encoder began"):
        tables.decode(payload, code.shape, seal=(1 << 32) + 12346)
    for shape in [(20, 9, 12), (20, 9, 10)]:  # a position more or less than was coded: garbage
        with pytest.raises(ValueError, match="ran out|left after|does not end"):
            tables.decode(payload, shape)


def test_a_code_outside_the_clamp_range_is_refused():
    """Symbols within the tables can still add up (through the predictors) to code values no encoder
    writes: the decoder refuses them."""
    tables = small_tables()
    code = np.zeros((20, 3, 4), np.int64)
    code[0, 0] = [0, 1000, 2000, 3000]  # DC residuals of 1000 each: within the tables, the code is not
    with pytest.raises(ValueError, match="outside the range"):
        tables.decode(tables.encode(code), code.shape)


@pytest.mark.parametrize("shift", [-16, 0, 16])
def test_payload_size_bounds_hold_for_extreme_codes(shift):
    """`stream.payload_bits` is honest for every shipped checkpoint: an all-zero code (the cheapest there is)
    is above its lower bound and a code at the clamp limits (the dearest) below its upper bound."""
    from cycleapp.core import checkpoint

    for path in checkpoint.available():
        tables = checkpoint.by_name(path.stem).tables.shifted(shift)
        shape = (tables.channels, 6, 7)
        least, most = stream.payload_bits(tables, shape)
        cheapest = tables.encode(np.zeros(shape, np.int64))
        extreme = tables.clamp(torch.full((1, *shape), 10 ** 4))[0]
        extreme[:, ::2] *= -1
        dearest = tables.encode(extreme.numpy())
        assert least <= 8 * len(cheapest) and 8 * len(dearest) <= most
        assert 8 * len(dearest) > 0.5 * most  # and not absurdly loose


def test_the_tables_adapt_to_the_code_and_the_decoder_reads_the_moves_first():
    """Channels much sparser than their tables expect are coded in fewer bits with their tables
    moved narrower (the encoder's choice, written at the head of the stream), and any moves within
    range round-trip: the decoder takes them from the stream, not from anything it decodes later."""
    tables = small_tables()
    code = tables.clamp(random_code(channels=20, h=16, w=16, spread=6))[0].numpy()
    code[10:] //= 6  # channels 10 to 19: values in -1..1 only
    moves = tables.adaptation(code)
    assert moves.shape == (19,) and np.abs(moves).max() <= ADAPT_RANGE
    assert moves[9:].mean() > moves[:9].mean() + 1  # + narrows a channel's tables
    unmoved = tables.encode(code, adaptation=np.zeros(19, np.int64))
    assert len(tables.encode(code)) < 0.9 * len(unmoved)
    assert np.array_equal(tables.decode(tables.encode(code), code.shape), code)
    rng = np.random.default_rng(0)
    for _ in range(3):
        other = rng.integers(-ADAPT_RANGE, ADAPT_RANGE + 1, 19)
        assert np.array_equal(tables.decode(tables.encode(code, adaptation=other), code.shape), code)
    for bad in (np.full(19, ADAPT_RANGE + 1), np.full(19, 0.5), np.zeros(18, np.int64)):
        with pytest.raises(ValueError, match="table moves"):
            tables.encode(code, adaptation=bad)


def test_the_moves_are_the_cheapest_and_none_where_they_do_not_pay():
    """On three channels the chosen moves cost no more bits (the symbols' under the moved tables
    plus the moves' own) than any other of the 17^3 choices; on a code too small for moves to pay,
    there are none and the stream holds the flag alone."""
    import itertools

    from train.diagnose import ideal_bits

    tables = small_tables(channels=4)
    code = tables.clamp(random_code(channels=4, h=12, w=12, spread=2, seed=0))[0]
    code[3:] //= 2  # the moves differ from channel to channel, none at the edge of the range

    def cost(moves):
        move_bits, _, ac = ideal_bits(tables, code, moves)
        return move_bits + float(ac.sum())

    chosen = cost(tables.adaptation(code.numpy()))
    span = range(-ADAPT_RANGE, ADAPT_RANGE + 1)
    assert all(chosen <= cost(np.array(m)) + 1e-9 for m in itertools.product(span, span, span))
    assert len(set(tables.adaptation(code.numpy()).tolist())) == 3
    small, wide = np.zeros((20, 1, 1), np.int64), small_tables()
    assert not wide.adaptation(small).any()
    assert np.array_equal(wide.decode(wide.encode(small), small.shape), small)


def test_moves_add_up_before_the_clip():
    """The tables depend on the total move alone: a rate-control shift to the edge of the grid and a
    move back give the tables unmoved."""
    tables = small_tables()
    assert len(set((tables.index // SCALES).ravel().tolist())) == len(SHAPES)
    for steps in (70, -70):  # to either edge of the grid: every table keeps its shape
        assert np.array_equal(tables.shifted(steps).index // SCALES, tables.index // SCALES)
        assert (tables.shifted(steps).index % SCALES == (0 if steps > 0 else SCALES - 1)).all()
    assert np.array_equal(tables.shifted(70).shifted(-70).index, tables.index)
    assert np.array_equal(tables.shifted(np.arange(19)).shifted(-np.arange(19)).index, tables.index)
    with pytest.raises(ValueError, match="whole grid steps"):
        tables.shifted(0.5)


def sealed_stream(tables, flag, differences=()):
    """A stream holding a flag and table-move differences only, as an encoder would put them."""
    import constriction

    coder = constriction.stream.stack.AnsCoder(stream.words(DEFAULT_SEAL))
    if len(differences):
        coder.encode_reverse(np.array(differences, np.int32) + 2 * ADAPT_RANGE, stream.MOVE_MODEL)
    coder.encode_reverse(np.array([flag], np.int32), stream.FLAG_MODEL)
    return coder.get_compressed().astype("<u4").tobytes()


def test_moves_beyond_the_range_or_past_the_data_are_refused_before_the_code():
    """A stream whose moves add up beyond ADAPT_RANGE (no encoder writes one) is refused at once,
    and so is one whose flag announces moves that are not there."""
    tables = small_tables()
    beyond = sealed_stream(tables, 1, [ADAPT_RANGE, 1] + [0] * 17)  # the second move is ADAPT_RANGE + 1
    with pytest.raises(ValueError, match="out of range"):
        tables.decode(beyond, (20, 1, 1))
    with pytest.raises(ValueError, match="ran out"):
        tables.decode(sealed_stream(tables, 1), (20, 1, 1))
