"""The learned codec: RGB pixels <-> `.cyc` bytes with one checkpoint."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import checkpoint as ckpts
from .bitstream import BitstreamError, CycFile
from .checkpoint import Checkpoint
from .entropy import GRID_RATIO
from .model import FACTOR


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, rounded and clipped."""
    return (x[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad to a multiple of 16 on the bottom/right (works down to 1x1)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % FACTOR, 0, -h % FACTOR), mode="replicate")


# Weight of the squared code error against bits in the encoder's rounding decisions, relative to
# the training loss (lambda * 255^2 * MSE + bpp); chosen on training images (README, "The model").
RDOQ_WEIGHT = 2.5
# Rate control: the steps of every channel after the DC can be scaled by GRID_RATIO ** (shift / 8),
# shift a signed byte in the header. Whole multiples of 8 move the coding tables by whole grid
# steps; in between, the nearest table is taken, so table choice stays integer arithmetic.
STEP_UNITS = 8
STEP_SHIFT_RANGE = (-128, 127)


def table_shift(step_shift: int) -> int:
    """The grid steps the coding tables move for a step shift (nearest, in integers)."""
    return (step_shift + STEP_UNITS // 2) // STEP_UNITS


def step_scales(ckpt: Checkpoint, step_shift: int) -> torch.Tensor:
    """Per channel, how much coarser than the checkpoint's steps the code is (1 for the DC)."""
    scales = torch.full((ckpt.channels,), GRID_RATIO ** (step_shift / STEP_UNITS), dtype=torch.float64)
    scales[0] = 1.0
    return scales


def check_step_shift(step_shift: int) -> None:
    lo, hi = STEP_SHIFT_RANGE
    if not (isinstance(step_shift, (int, np.integer)) and lo <= step_shift <= hi):
        raise ValueError(f"step shift must be an integer from {lo} to {hi}")


@torch.no_grad()
def quantized_code(ckpt: Checkpoint, rgb: np.ndarray, rdoq_weight: float = RDOQ_WEIGHT,
                   step_shift: int = 0) -> torch.Tensor:
    """The integer code the file stores: rate-distortion optimised rounding, within the tables' range.

    A code error e in channel c costs about steps[c]^2 * e^2 / 3 of MSE per pixel (the decoder is
    close to orthonormal), and the training loss weighs MSE by lambda * 255^2 against bits.
    """
    model = ckpt.model
    scales = step_scales(ckpt, step_shift)
    y = model.encode(_pad(to_tensor(rgb)), 0) / scales.float().view(1, -1, 1, 1)
    steps = model.log_steps[0].exp().double() * scales
    weight = rdoq_weight * model.config.sizes[0].lmbda * 255 ** 2 / 3 * steps ** 2
    return ckpt.tables.shifted(table_shift(step_shift)).quantize(y, weight)


@torch.no_grad()
def reconstruct_from_code(ckpt: Checkpoint, code: torch.Tensor, height: int, width: int,
                          step_shift: int = 0) -> np.ndarray:
    scales = step_scales(ckpt, step_shift).float().view(1, -1, 1, 1)
    x_hat = ckpt.model.decode(code.float() * scales, 0)
    return to_pixels(x_hat[..., :height, :width])


def reconstruct(ckpt: Checkpoint, rgb: np.ndarray, rdoq_weight: float = RDOQ_WEIGHT,
                step_shift: int = 0) -> np.ndarray:
    """The model's own quantised forward pass (no entropy coding): what decode must reproduce."""
    code = quantized_code(ckpt, rgb, rdoq_weight, step_shift)
    return reconstruct_from_code(ckpt, code, *rgb.shape[:2], step_shift)


def encode(ckpt: Checkpoint, rgb: np.ndarray, rdoq_weight: float = RDOQ_WEIGHT, step_shift: int = 0) -> bytes:
    """Compress an (H, W, 3) uint8 image into the bytes of a .cyc file.

    rdoq_weight: the encoder's rounding trade-off (inf: plain rounding); step_shift: quantisation
    steps GRID_RATIO ** (step_shift / 8) times the checkpoint's (positive: a smaller file)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        raise ValueError("expected an RGB image of shape (H, W, 3), uint8, at least 1x1")
    check_step_shift(step_shift)
    code = quantized_code(ckpt, rgb, rdoq_weight, step_shift)[0].to(torch.int64).numpy()
    payload = ckpt.tables.shifted(table_shift(step_shift)).encode(code)
    return CycFile(ckpt.id, rgb.shape[1], rgb.shape[0], code.shape, payload, int(step_shift)).to_bytes()


def decode(data: bytes, ckpt: Checkpoint | None = None) -> np.ndarray:
    """Decompress .cyc bytes to (H, W, 3) uint8 pixels; finds the checkpoint by its id if not given."""
    cyc = CycFile.from_bytes(data)
    if ckpt is None:
        ckpt = ckpts.by_id(cyc.checkpoint_id)
    elif ckpt.id != cyc.checkpoint_id:
        raise ValueError(f"this file was made by checkpoint {cyc.checkpoint_id.hex()}, "
                         f"not by '{ckpt.name}' ({ckpt.id.hex()})")
    expected = (ckpt.channels, -(-cyc.height // FACTOR), -(-cyc.width // FACTOR))
    if cyc.code_shape != expected:
        raise BitstreamError(f"corrupted .cyc file (code shape {cyc.code_shape}, expected {expected})")
    try:
        code = ckpt.tables.shifted(table_shift(cyc.step_shift)).decode(cyc.payload, cyc.code_shape)
    except Exception as e:  # constriction reports malformed streams in several ways
        raise BitstreamError(f"corrupted .cyc payload ({e})") from None
    return reconstruct_from_code(ckpt, torch.from_numpy(code)[None], cyc.height, cyc.width, cyc.step_shift)
