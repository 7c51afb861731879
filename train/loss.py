"""The training loss, assembled in one place (docs/model.md, "The training loss"):

    loss = lambda * 255^2 * MSE  (or 1000 * (1 - MS-SSIM))  +  bpp  +  beta * cycle  +  gamma * sparsity

The model's forward pass gives the parts: the reconstruction from the straight-through rounded
code, each crop's estimated bits per pixel (the entropy model on the code plus uniform noise), the
cycle distance between the code of the image and the code of its reconstruction, and the code's
mean magnitude (L1 sparsity). The rate-distortion part is per crop, so that `--balanced` can weigh
the crops (`crop_weights`); the cycle and sparsity terms are the batch's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_msssim import ms_ssim

MS_SSIM_SCALE = 1000.0  # puts (1 - MS-SSIM) on roughly the scale of 255^2 * MSE
MS_SSIM_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363]  # four scales (pytorch_msssim wants crops over 160 pixels)


@dataclass
class Terms:
    """A step's loss and what the log shows of it (the batch's means)."""
    loss: torch.Tensor
    distortion: torch.Tensor
    bpp: torch.Tensor
    mse: torch.Tensor
    cycle: torch.Tensor
    sparsity: torch.Tensor


def crop_weights(rd: torch.Tensor) -> torch.Tensor:
    """Weights of a batch's crops from their rate-distortion losses (detached): the inverse of each
    loss, floored at a tenth of the batch's mean so that a blank crop cannot take the whole batch.

    A plain mean lets busy crops, whose losses are ten times a smooth crop's, set the shared
    transform's course; weighted so, every crop's relative gain counts the same (the gradient of the
    mean log-loss), as it does in a per-image BD-rate, and the smooth photos of modern cameras get
    their say."""
    return 1 / rd.clamp_min(0.1 * rd.mean())


def distortion_of(x_hat: torch.Tensor, x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crop's distortion on the loss's scale (`kind`: "mse" or "ms-ssim"), and its MSE."""
    mse = (x_hat - x).square().mean((1, 2, 3))
    if kind == "mse":
        return 255 ** 2 * mse, mse
    quality = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, weights=MS_SSIM_WEIGHTS, size_average=False)
    return MS_SSIM_SCALE * (1 - quality), mse


def loss(out: dict, x: torch.Tensor, lmbda: float, *, beta: float, gamma: float, distortion: str = "mse",
         balanced: bool = False) -> Terms:
    """The loss of one step from the model's output `out` on the crops `x`, at code size lambda
    `lmbda`: the rate-distortion loss (each crop's, weighed by `crop_weights` if `balanced`, else
    their mean) plus beta times the cycle distance (0 when the pass was skipped) plus gamma times
    the sparsity."""
    per_crop, mse = distortion_of(out["x_hat"], x, distortion)
    rd = lmbda * per_crop + out["bpp"]
    weights = crop_weights(rd.detach()) if balanced else torch.ones_like(rd)
    rd = (rd * weights).sum() / weights.sum()
    cycle = out.get("cycle", torch.zeros((), device=x.device))
    total = rd + beta * cycle + gamma * out["sparsity"]
    return Terms(total, per_crop.mean(), out["bpp"].mean(), mse.mean(), cycle, out["sparsity"])
