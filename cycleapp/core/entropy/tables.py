"""The coding tables of one checkpoint (`CodingTables`): for every symbol, the table constriction
codes it with, and the one place where the bits of symbols are read from those tables (`bits`).

A checkpoint stores the DC densities per DC context, the table family (`family.ac_tables`), each
(channel, context)'s table index, and each channel's predictor and activity weight; these are
checked once, here, and turned into constriction's models. The tables move along the grid of scales
(`shifted`) for rate control and for the per-image moves; what is done with them lives beside:
the stream's order and coder in `stream`, the encoder's choices (RDOQ, the moves) in `rdo`.
"""
from __future__ import annotations

import copy

import constriction
import numpy as np
import torch

from . import rdo, stream
from .context_rule import ACTIVITY_WEIGHT_MAX, CONTEXTS, DC_CONTEXTS, contexts, dc_contexts
from .family import TABLES, moved
from .prediction import AC_CLAMP, DC_CLAMP, DC_PREDICTORS, PREDICTORS, code_limits, residuals


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
        self.ac_probabilities = ac.numpy().astype(np.float64)  # (TABLES, symbols)
        # -log2 of every probability (a zero one counts as 1e-300), read through `bits` and `dc_bits`
        self.ac_bits = -torch.from_numpy(self.ac_probabilities).clamp_min(1e-300).log2()
        self._dc_bits = -torch.from_numpy(self.dc_probabilities).clamp_min(1e-300).log2()
        self.dc_models = [constriction.stream.model.Categorical(p, perfect=False) for p in self.dc_probabilities]
        self.models = [constriction.stream.model.Categorical(p, perfect=False) for p in self.ac_probabilities]

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

    def table(self, ctx: torch.Tensor) -> torch.Tensor:
        """The table index of every symbol after the DC from its contexts (..., C - 1, H, W)."""
        return torch.from_numpy(self.index)[torch.arange(self.channels - 1).view(-1, 1, 1), ctx]

    def bits(self, table, symbols):
        """The bits (-log2 p) of integer symbols after the DC, each under its table: `table` holds
        indices into the family (`ac_tables`), broadcast against `symbols`; torch tensors or numpy
        arrays, the same kind out. The one place such bits are read: RDOQ, the table moves and the
        tools of `train` (calibrate, headroom, diagnose) all count with it."""
        ac_bits = self.ac_bits.numpy() if isinstance(symbols, np.ndarray) else self.ac_bits
        return ac_bits[table, symbols + AC_CLAMP]

    def dc_bits(self, dc):
        """The bits of every DC residual of integer residuals (..., H, W), each under its context's
        density (`dc_contexts`); a torch tensor or a numpy array, the same kind out."""
        residual = torch.from_numpy(dc) if isinstance(dc, np.ndarray) else dc
        out = self._dc_bits[dc_contexts(residual), residual + 4 * DC_CLAMP]
        return out.numpy() if isinstance(dc, np.ndarray) else out

    # What is done with the tables, each in its own module.

    def quantize(self, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RDOQ: `rdo.quantize`."""
        return rdo.quantize(self, y, weight)

    def adaptation(self, code: np.ndarray) -> np.ndarray:
        """The per-image table moves the encoder writes: `rdo.adaptation`."""
        return rdo.adaptation(self, code)

    def encode(self, code: np.ndarray, seal: int = stream.DEFAULT_SEAL, adaptation: np.ndarray | None = None) -> bytes:
        """code: int array (C, H, W), already clamped -> the payload (`stream.encode`), with the
        table moves `adaptation` unless given."""
        chunks = list(stream.coded_after_dc(self, code))  # the same symbols and contexts under any moves
        moves = rdo.cheapest_moves(self, chunks, code.shape[0]) if adaptation is None else adaptation
        return stream.encode(self, code, moves, seal, chunks)

    def decode(self, payload, shape: tuple[int, int, int], seal: int | None = None) -> np.ndarray:
        """The int16 code (C, H, W) of a payload: `stream.decode`."""
        return stream.decode(self, payload, shape, seal)
