"""Entropy model of the code and the real entropy coder.

Training uses a per-channel factorised density (Balle et al. 2018, appendix 6.1): a small
monotone network per channel models the cumulative distribution, and the probability of an
integer symbol is the CDF difference over [y - 1/2, y + 1/2].

For coding, the density is tabulated once, at checkpoint export, into a probability table per
channel (a symbol range plus probabilities). The tables are stored with the weights, and both
the encoder and the decoder hand exactly those numbers to `constriction`, so encode and
decode never recompute them differently.
"""
from __future__ import annotations

import math

import constriction
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOOD_FLOOR = 1e-9
TABLE_RANGE = 4096  # symbols are tabulated in [-TABLE_RANGE, TABLE_RANGE] before trimming
TAIL_MASS = 1e-10  # probability mass left out of a table on each side


class FactorizedDensity(nn.Module):
    """Per-channel learned cumulative density, filters (1, 3, 3, 3, 1)."""

    def __init__(self, channels: int, filters=(3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """v: (C, 1, N) values -> (C, 1, N) logits of the CDF."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            v = torch.matmul(F.softplus(m), v) + b
            if i < len(self.factors):
                v = v + torch.tanh(self.factors[i]) * torch.tanh(v)
        return v

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """Probability of each (noisy or integer) code value y of shape (B, C, H, W)."""
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.clamp_min(LIKELIHOOD_FLOOR)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tabulate the density: (offsets int32 (C,), lengths int32 (C,), probabilities float32 (sum lengths,)).

        Channel c codes the integers offsets[c] .. offsets[c] + lengths[c] - 1.
        """
        channels = self.matrices[0].shape[0]
        support = torch.arange(-TABLE_RANGE, TABLE_RANGE + 1, dtype=torch.float32)
        v = support.expand(channels, 1, -1).contiguous()
        lower = torch.sigmoid(self.logits_cdf(v - 0.5).double())
        upper = torch.sigmoid(self.logits_cdf(v + 0.5).double())
        pmf = (upper - lower).clamp_min(0).squeeze(1)  # (C, N)
        cdf = torch.cumsum(pmf, dim=1)
        offsets, lengths, probs = [], [], []
        for c in range(channels):
            lo = int(torch.searchsorted(cdf[c], torch.tensor([TAIL_MASS], dtype=torch.float64)))
            hi = int(torch.searchsorted(cdf[c], cdf[c, -1:] - TAIL_MASS))
            hi = max(hi, lo)
            offsets.append(lo - TABLE_RANGE)
            lengths.append(hi - lo + 1)
            probs.append(pmf[c, lo:hi + 1])
        return (torch.tensor(offsets, dtype=torch.int32), torch.tensor(lengths, dtype=torch.int32),
                torch.cat(probs).float())


class CodingTables:
    """The fixed probability tables of one checkpoint, ready for constriction."""

    def __init__(self, offsets: torch.Tensor, lengths: torch.Tensor, probabilities: torch.Tensor):
        self.offsets = offsets.numpy().astype(np.int64)
        self.lengths = lengths.numpy().astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        probs = probabilities.numpy().astype(np.float64)
        self.probabilities = probs
        self.models = [
            constriction.stream.model.Categorical(probs[s:s + n], perfect=False)
            for s, n in zip(starts, self.lengths)
        ]

    @property
    def channels(self) -> int:
        return len(self.models)

    def clamp(self, symbols: torch.Tensor) -> torch.Tensor:
        """Clip integer code values (B, C, H, W) into each channel's coded range."""
        lo = torch.as_tensor(self.offsets, dtype=symbols.dtype).view(1, -1, 1, 1)
        hi = lo + torch.as_tensor(self.lengths - 1, dtype=symbols.dtype).view(1, -1, 1, 1)
        return torch.maximum(torch.minimum(symbols, hi), lo)

    def encode(self, symbols: np.ndarray) -> bytes:
        """symbols: int array (C, H, W), already within range -> compressed bytes."""
        coder = constriction.stream.stack.AnsCoder()
        for c in reversed(range(self.channels)):
            idx = (symbols[c].reshape(-1) - self.offsets[c]).astype(np.int32)
            coder.encode_reverse(idx, self.models[c])
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Inverse of encode; raises ValueError when the payload does not decode cleanly."""
        c, h, w = shape
        if len(payload) % 4:
            raise ValueError("payload length is not a multiple of 4")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        coder = constriction.stream.stack.AnsCoder(words)
        out = np.empty((c, h * w), dtype=np.int64)
        for ch in range(c):
            out[ch] = coder.decode(self.models[ch], h * w).astype(np.int64) + self.offsets[ch]
        if not coder.is_empty():
            raise ValueError("payload has trailing data")
        return out.reshape(c, h, w)
