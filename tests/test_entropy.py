"""Spatial prediction in the entropy coder: exact, causal, and chosen where it pays."""
import numpy as np
import pytest
import torch

from cycleapp.entropy import (AC_CLAMP, PLANAR, PREDICTORS, CodingTables, EntropyModel, choose_predictors,
                              from_residuals, residuals)


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


def test_predictors_are_chosen_where_they_pay():
    """A channel that drifts slowly along the rows gets the left predictor; white noise gets none;
    channel 0 is always planar."""
    g = torch.Generator().manual_seed(1)
    code = torch.zeros(4, 3, 16, 16, dtype=torch.int64)
    code[:, 1] = torch.randint(-1, 2, (4, 16, 16), generator=g).cumsum(2) + 40
    code[:, 2] = torch.randint(-9, 10, (4, 16, 16), generator=g)
    chosen = choose_predictors(code)
    assert chosen[0] == PLANAR
    assert PREDICTORS[int(chosen[1])] == "left"
    assert PREDICTORS[int(chosen[2])] == "none"


def test_coding_with_predictors_round_trips_at_the_limits():
    """Every predictor, values up to each channel's limit: decode(encode(code)) is the code."""
    density = EntropyModel(6)
    density.predictor.copy_(torch.tensor([PLANAR, 1, 2, PLANAR, 0, 1]))
    tables = CodingTables(*density.tables())
    code = random_code(spread=AC_CLAMP)
    code = tables.clamp(code)
    assert int(code[0, 3].abs().max()) == AC_CLAMP // 4 and int(code[0, 1].abs().max()) == AC_CLAMP // 2
    assert int(tables.symbols(code).abs().max()) <= AC_CLAMP * 4
    data = tables.encode(code[0].numpy())
    assert np.array_equal(tables.decode(data, tuple(code.shape[1:])), code[0].numpy())


def test_inconsistent_predictors_are_refused():
    density = EntropyModel(4)
    dc, laplace, index, predictor = density.tables()
    with pytest.raises(ValueError, match="inconsistent"):
        CodingTables(dc, laplace, index, torch.tensor([PLANAR, 0, 7, 0], dtype=torch.int16))
    with pytest.raises(ValueError, match="inconsistent"):
        CodingTables(dc, laplace, index, torch.tensor([0, 0, 0, 0], dtype=torch.int16))
    with pytest.raises(ValueError, match="inconsistent"):
        CodingTables(dc, laplace, index, predictor[:3])
