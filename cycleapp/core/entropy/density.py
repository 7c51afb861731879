"""The trainable entropy model: what training minimises as the rate, and what export turns into
coding tables (`EntropyModel.tables`).

The DC residual has DC_CONTEXTS learned factorised densities (Balle et al. 2018, appendix 6.1), one
per DC context; every channel after the DC has a Laplace scale per (channel, context), which export
snaps to the grid of the table family (`family`) and calibration gives a shape of its own.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .context_rule import CONTEXTS, DC_CONTEXTS, contexts, dc_contexts
from .family import LAPLACE, LIKELIHOOD_FLOOR, SCALES, ac_tables, scale_grid
from .prediction import DC_CLAMP, PLANAR, residuals


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
        """Probability of each (noisy or integer) value y of shape (B, C, H, W)."""
        b, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.clamp_min(LIKELIHOOD_FLOOR)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def table(self, radius: int) -> torch.Tensor:
        """Probabilities of the integers -radius .. radius under each channel's density, float32
        (channels, 2 * radius + 1)."""
        v = torch.arange(-radius, radius + 1, dtype=torch.float32).view(1, 1, -1)
        pmf = torch.sigmoid(self.logits_cdf(v + 0.5).double()) - torch.sigmoid(self.logits_cdf(v - 0.5).double())
        return pmf.clamp_min(0)[:, 0].float()


class EntropyModel(nn.Module):
    """Context-conditional densities: factorised ones for the DC residual, generalised Gaussians for
    the others (a Laplace in training; `train.calibrate` chooses each one's shape from real codes)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.dc = FactorizedDensity(DC_CONTEXTS)  # one density per DC context
        self.log_scale = nn.Parameter(torch.zeros(channels - 1, CONTEXTS))
        predictor = torch.zeros(channels, dtype=torch.int64)
        predictor[0] = PLANAR
        self.register_buffer("predictor", predictor)  # chosen once per run: choose_predictors
        self.register_buffer("activity", torch.ones(channels, dtype=torch.int64))  # and activity_weights
        self.register_buffer("shape_index", torch.full((channels - 1, CONTEXTS), LAPLACE))  # train.calibrate's

    def likelihood(self, y: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Probability of the (noisy or integer) code y; contexts and predictions come from the
        integer code. A predicted channel's symbol is the integer residual, with a straight-through
        gradient; the others are the noisy code itself. The channels after the DC are Laplace
        whatever their tables' shapes: training fits scales, calibration shapes."""
        straight = residuals(code + (y - y.detach()), self.predictor)
        symbols = torch.where(self.predictor.view(1, -1, 1, 1) > 0, straight, y)
        integer = residuals(code, self.predictor)
        every_dc_density = self.dc.likelihood(symbols[:, :1].expand(-1, DC_CONTEXTS, -1, -1))
        p = every_dc_density.gather(1, dc_contexts(integer[:, 0].long())[:, None])
        if self.channels == 1:
            return p
        ctx = contexts(integer, self.activity)[:, 1:]
        rows = torch.arange(self.channels - 1, device=y.device).view(1, -1, 1, 1)
        scale = self.log_scale.exp()[rows, ctx]
        return torch.cat([p, laplace_likelihood(symbols[:, 1:], scale)], dim=1)

    @torch.no_grad()
    def tables(self) -> tuple[torch.Tensor, ...]:
        """Coding tables: the DC residual's probabilities per DC context (DC_CONTEXTS, 8 * DC_CLAMP
        + 1), the tables of the other channels (`ac_tables`), each (channel, context)'s table index
        (its shape's, at its scale's nearest on the grid), each channel's predictor and activity
        weight."""
        grid = scale_grid()
        position = (self.log_scale.double() - grid[0].log()) / (grid[1].log() - grid[0].log())
        index = self.shape_index.cpu() * SCALES + position.round().clamp(0, SCALES - 1).to(torch.int64).cpu()
        return (self.dc.table(4 * DC_CLAMP), ac_tables(), index.to(torch.int16), self.predictor.to(torch.int16).cpu(),
                self.activity.to(torch.int16).cpu())
