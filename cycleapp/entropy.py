"""Entropy model of the code and the real entropy coder.

The first FACTORIZED_CHANNELS channels (the lowest frequencies, DC included) use a per-channel
factorised density (Balle et al. 2018, appendix 6.1): a small monotone network per channel models
the cumulative distribution; the probability of an integer is the CDF difference over [y - 1/2, y + 1/2].

Every further channel uses a zero-mean Laplace density whose scale depends on a context: an
integer bucket of the activity (sum of |code|) of the already-decoded lower channels in the 3x3
neighbourhood. The context is computed with integer arithmetic only, so the encoder and the
decoder pick the same table on any machine; channels are decoded group by group (GROUP_EDGES),
each group in parallel once the groups below it are known.

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
FACTORIZED_CHANNELS = 8
GROUP_EDGES = (8, 16, 32, 64, 96, 128, 160, 192, 224, 256, 320)
CONTEXTS = 12  # activity buckets: floor(log2(1 + activity)), capped
LAPLACE_TAIL = 1e-7  # Laplace tables cover |y| <= scale * ln(1 / LAPLACE_TAIL)


def group_start(c: int) -> int:
    return max(e for e in GROUP_EDGES if e <= c)


def contexts(code: torch.Tensor) -> torch.Tensor:
    """Context bucket of every integer code value (B, C, H, W) -> int64 (B, C, H, W); 0 for factorised channels.

    Channel c's context is computed from channels 1 .. group_start(c) - 1 only, which the decoder
    has already decoded when it reaches c's group. Integer arithmetic only: exact everywhere.
    """
    b, c, h, w = code.shape
    mag = code.to(torch.int64).abs()
    mag[:, 0] = 0  # the DC channel says little about texture
    prefix = F.pad(mag.cumsum(1), (0, 0, 0, 0, 1, 0))  # prefix[:, s] = sum of channels < s
    starts = torch.tensor([group_start(i) if i >= FACTORIZED_CHANNELS else 0 for i in range(c)])
    act = F.pad(prefix[:, starts], (1, 1, 1, 1))
    box = sum(act[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3))
    ctx = torch.zeros_like(box)
    for j in range(1, CONTEXTS):
        ctx += (box + 1 >= 2 ** j).to(torch.int64)
    ctx[:, :FACTORIZED_CHANNELS] = 0
    return ctx


def laplace_likelihood(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(Y in [y - 1/2, y + 1/2]) for a zero-mean Laplace of the given scale (symmetric form)."""
    v = -y.abs()
    upper, lower = (v + 0.5) / scale, (v - 0.5) / scale
    cdf_upper = torch.where(upper <= 0, 0.5 * torch.exp(upper.clamp(max=0)), 1 - 0.5 * torch.exp(-upper.clamp(min=0)))
    p = cdf_upper - 0.5 * torch.exp(lower)
    return p.clamp_min(LIKELIHOOD_FLOOR)


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


class EntropyModel(nn.Module):
    """Factorised density for the first channels, context-conditional Laplace for the rest."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.split = min(channels, FACTORIZED_CHANNELS)
        self.factorized = FactorizedDensity(self.split)
        self.log_scale = nn.Parameter(torch.zeros(channels - self.split, CONTEXTS))

    def likelihood(self, y: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Probability of the (noisy or integer) code y, contexts taken from the integer code."""
        p = self.factorized.likelihood(y[:, :self.split])
        if self.channels == self.split:
            return p
        ctx = contexts(code)[:, self.split:]
        rows = torch.arange(self.channels - self.split).view(1, -1, 1, 1)
        scale = self.log_scale.exp()[rows, ctx]
        return torch.cat([p, laplace_likelihood(y[:, self.split:], scale)], dim=1)

    @torch.no_grad()
    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Coding tables: (offsets (C,), lengths (C,), probabilities) where a factorised channel has
        one table of `length` entries and a context channel CONTEXTS tables of `length` entries."""
        offsets, lengths, probs = self.factorized.tables()
        offsets, lengths, probs = list(offsets), list(lengths), [probs]
        scales = self.log_scale.double().exp()
        for row in scales:
            r = int(min(TABLE_RANGE, math.ceil(float(row.max()) * math.log(1 / LAPLACE_TAIL)) + 1))
            support = torch.arange(-r, r + 1, dtype=torch.float64)
            for b in row:
                probs.append(laplace_likelihood(support, b).clamp_min(0).float())
            offsets.append(-r)
            lengths.append(2 * r + 1)
        return (torch.tensor(offsets, dtype=torch.int32), torch.tensor(lengths, dtype=torch.int32),
                torch.cat(probs).float())


class CodingTables:
    """The fixed probability tables of one checkpoint, ready for constriction."""

    def __init__(self, offsets: torch.Tensor, lengths: torch.Tensor, probabilities: torch.Tensor):
        self.offsets = offsets.numpy().astype(np.int64)
        self.lengths = lengths.numpy().astype(np.int64)
        self.probabilities = probabilities.numpy().astype(np.float64)
        self.models: list[list] = []  # per channel, one model per context (one for factorised channels)
        start = 0
        for c, n in enumerate(self.lengths):
            count = 1 if c < FACTORIZED_CHANNELS else CONTEXTS
            self.models.append([constriction.stream.model.Categorical(self.probabilities[s:s + n], perfect=False)
                                for s in range(start, start + count * n, n)])
            start += count * n
        if start != len(self.probabilities):
            raise ValueError("coding tables are inconsistent")

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
        ctx = contexts(torch.from_numpy(symbols)[None])[0].numpy()
        coder = constriction.stream.stack.AnsCoder()
        for c in reversed(range(self.channels)):  # the exact reverse of the decoding order
            idx = (symbols[c] - self.offsets[c]).astype(np.int32)
            for k in reversed(range(len(self.models[c]))):
                sel = idx[ctx[c] == k] if len(self.models[c]) > 1 else idx.reshape(-1)
                if sel.size:
                    coder.encode_reverse(sel, self.models[c][k])
        return coder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """Inverse of encode; raises ValueError when the payload does not decode cleanly."""
        c_total, h, w = shape
        if len(payload) % 4:
            raise ValueError("payload length is not a multiple of 4")
        words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
        coder = constriction.stream.stack.AnsCoder(words)
        out = np.zeros((c_total, h, w), dtype=np.int64)
        ctx = None
        for c in range(c_total):
            if len(self.models[c]) == 1:
                out[c] = coder.decode(self.models[c][0], h * w).reshape(h, w).astype(np.int64) + self.offsets[c]
                continue
            if c == group_start(c) or ctx is None:  # a new group: its contexts are now known
                ctx = contexts(torch.from_numpy(out)[None])[0].numpy()
            for k in range(CONTEXTS):
                mask = ctx[c] == k
                n = int(mask.sum())
                if n:
                    out[c][mask] = coder.decode(self.models[c][k], n).astype(np.int64) + self.offsets[c]
        if not coder.is_empty():
            raise ValueError("payload has trailing data")
        return out
