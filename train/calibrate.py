"""Fit a run's coding tables to the real codes of its training photos:
`python -m train.calibrate RUN --out RUN2`, then `python -m train.export RUN2`.

Training fits the entropy models to a proxy of what is coded: the continuous code plus uniform
noise, on random crops, under Laplace densities. The coder codes something else: the integers that
the encoder's rate-distortion optimised rounding leaves (it pulls values to zero, so the real
symbols have a sharper peak and heavier tails), over whole photos, under tables that each photo
moves to fit its own channels (`CodingTables.adaptation`). So after training, every code size's
tables are fitted to the real codes of the training photos (whole, and the large ones at half scale
too, as training sees them):
- each (channel, context) takes the table (`entropy.ac_tables`: a generalised Gaussian of one of
  the shapes, at one of the scales of the grid) that codes its symbols in the fewest bits, each
  photo's symbols counted under the table as that photo's moves shift it, plus PRIOR_SYMBOLS more
  drawn from the Laplace table that training found, so that a rare context stays near it;
- the DC densities are fitted to the integer DC residuals (maximum likelihood).
The rounding and the moves read the tables, so this is done ROUNDS times, each on the codes and
moves the tables before it give. Only the entropy models change (the transform, the steps and the
predictors stay), and the result is a new run whose state export reads as any other; its lineage
(train/lineage.py) is the calibrated run's, and the calibration a stage of its own.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cycleapp.core import entropy
from cycleapp.core.codec import quantized_code
from cycleapp.core.entropy import AC_CLAMP, CONTEXTS, DC_CLAMP, DC_CONTEXTS, SCALES, TABLES
from train import lineage
from train.data import load_images
from train.errors import TrainError, command
from train.export import as_checkpoint, load_run
from train.state import save_state

PRIOR_SYMBOLS = 64  # pseudo-symbols from the trained table in each (channel, context)
ROUNDS = 2
DC_ITERATIONS = 400
SYMBOLS = 2 * AC_CLAMP + 1


def add_bits(cost: torch.Tensor, cells: torch.Tensor, symbols: torch.Tensor, tables: entropy.CodingTables,
             candidates: torch.Tensor) -> None:
    """cost[cell, j] += the bits of every (cell, symbol) pair under the table candidates[j]
    (`CodingTables.bits`), each pair counted once however often it occurs."""
    pairs, n = torch.unique(cells.ravel() * SYMBOLS + symbols.ravel() + AC_CLAMP, return_counts=True)
    symbol = pairs % SYMBOLS - AC_CLAMP
    cost.index_add_(0, pairs // SYMBOLS, n[:, None].double() * tables.bits(candidates[None, :], symbol[:, None]))


class RealCodes:
    """What the tables are fitted to, from one code size's real codes under `tables`: the bits of
    each (channel, context)'s symbols under every table, moved as each photo moves its tables, and
    how often each DC residual occurs in each DC context."""

    def __init__(self, tables: entropy.CodingTables):
        if tables.shift.any():
            raise ValueError("the tables to fit are the stored ones, unmoved")
        self.tables = tables
        self.ac = torch.zeros((tables.channels - 1) * CONTEXTS, TABLES, dtype=torch.float64)
        self.symbols = 0
        self.dc = np.zeros(DC_CONTEXTS * (8 * DC_CLAMP + 1), np.int64)
        # every table moved m grid steps narrower, as a photo's moves move it: m -> (TABLES,)
        self.moved = {m: torch.from_numpy(entropy.moved(np.arange(TABLES), m))
                      for m in range(-entropy.ADAPT_RANGE, entropy.ADAPT_RANGE + 1)}

    def add(self, code: torch.Tensor) -> None:
        """Count one integer code (1, C, H, W) in: its symbols in their contexts, under its moves."""
        symbols = self.tables.symbols(code)
        dc = symbols[0, 0]
        key = entropy.dc_contexts(dc) * (8 * DC_CLAMP + 1) + dc + 4 * DC_CLAMP
        self.dc += np.bincount(key.view(-1).numpy(), minlength=len(self.dc))
        if self.tables.channels == 1:
            return
        moves = self.tables.adaptation(code[0].numpy())
        ctx = self.tables.contexts(symbols)[0, 1:]
        cells = torch.arange(self.tables.channels - 1).view(-1, 1, 1) * CONTEXTS + ctx
        for m in np.unique(moves):
            channels = torch.from_numpy(np.flatnonzero(moves == m))
            add_bits(self.ac, cells[channels], symbols[0, 1:][channels], self.tables, self.moved[int(m)])
        self.symbols += ctx.numel()

    def bits(self, index: torch.Tensor) -> float:
        """Bits per symbol after the DC with the tables `index` (C - 1, CONTEXTS), the same moves."""
        return float(self.ac.gather(1, index.view(-1, 1)).sum()) / max(self.symbols, 1)


def best_tables(codes: RealCodes, trained: torch.Tensor) -> torch.Tensor:
    """Per (channel, context), the index of the table that codes its symbols in the fewest bits,
    with PRIOR_SYMBOLS more distributed as its `trained` table's probabilities (unmoved)."""
    p = torch.from_numpy(codes.tables.ac_probabilities)
    cross = (p / p.sum(1, keepdim=True)) @ codes.tables.ac_bits.T  # [table, other]: bits a symbol
    return (codes.ac + PRIOR_SYMBOLS * cross[trained.view(-1)]).argmin(1).view(trained.shape)


def fit_dc(density: entropy.FactorizedDensity, codes: RealCodes) -> tuple[float, float]:
    """Fit the DC densities (one per DC context) to the counted integer residuals; their bits per
    residual before and after."""
    counts = torch.from_numpy(codes.dc).view(DC_CONTEXTS, -1).double()
    seen = counts.sum(0).nonzero()[:, 0]
    values = (seen - 4 * DC_CLAMP).float().view(1, 1, 1, -1).expand(1, DC_CONTEXTS, 1, -1)
    counts = counts[:, seen]
    bits = lambda: -(counts * density.likelihood(values)[0, :, 0].double().log2()).sum() / counts.sum()
    with torch.no_grad():
        before = float(bits())
    opt = torch.optim.Adam(density.parameters(), lr=1e-2)
    for it in range(DC_ITERATIONS):
        if it == DC_ITERATIONS // 2:
            for group in opt.param_groups:
                group["lr"] = 1e-3
        opt.zero_grad(set_to_none=True)
        bits().backward()
        opt.step()
    with torch.no_grad():
        return before, float(bits())


def calibrate(model, images: list[torch.Tensor]) -> None:
    """Fit every code size's tables of a nested model to the real codes of `images` (in place)."""
    grid_log = entropy.scale_grid().log()
    for i, size in enumerate(model.config.sizes):
        density = model.densities[i]
        trained = torch.from_numpy(as_checkpoint(model, i).tables.base_index)
        for r in range(ROUNDS):
            ckpt = as_checkpoint(model, i)
            codes = RealCodes(ckpt.tables)
            for img in tqdm(images, desc=f"{size.name}, round {r + 1}", leave=False):
                codes.add(quantized_code(ckpt, img.permute(1, 2, 0).numpy()).to(torch.int64))
            index = best_tables(codes, trained)
            ac = codes.bits(torch.from_numpy(ckpt.tables.base_index)), codes.bits(index)
            dc = fit_dc(density.dc, codes)
            shape, scale = index.div(SCALES, rounding_mode="floor"), index % SCALES
            with torch.no_grad():
                density.log_scale.copy_(grid_log[scale].float())
                density.shape_index.copy_(shape)
            laplace = (shape == entropy.LAPLACE).double().mean()
            print(f"{size.name}, round {r + 1}: {100 * (index != trained).double().mean():.1f} % of the tables "
                  f"differ from training's, {100 * laplace:.1f} % Laplace; bits a symbol after the DC "
                  f"{ac[0]:.4f} -> {ac[1]:.4f}, a DC residual {dc[0]:.3f} -> {dc[1]:.3f}")


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a training run (holds state.pt)")
    p.add_argument("--out", type=Path, required=True, help="the calibrated run's folder")
    p.add_argument("--data", type=Path, default=None, help="the photos (default: the run's training data)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    if (args.out / "state.pt").exists():
        raise TrainError(f"{args.out} already holds a run: choose another --out")
    torch.set_num_threads(args.threads)
    model, state = load_run(args.run)
    data = args.data or Path(state["args"]["data"])
    images = load_images(data, 16)
    calibrate(model, images)
    args.out.mkdir(parents=True, exist_ok=True)
    state["lineage"] = lineage.of_run(state, args.run)  # the calibrated run, before it is marked calibrated
    state["model"] = model.state_dict()
    state["calibrated"] = {"images": len(images), "rounds": ROUNDS, "prior_symbols": PRIOR_SYMBOLS,
                           "data": str(data), "hardware": {lineage.hardware_name(torch.device("cpu")): 0}}
    save_state(state, args.out / "state.pt")
    print(f"saved {args.out / 'state.pt'}")


if __name__ == "__main__":
    main()
