"""Image quality metrics, from well-kept libraries (scikit-image, pytorch-msssim)."""
from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

MS_SSIM_MIN_SIDE = 161  # 5 scales with an 11-pixel window need more than (11 - 1) * 2**4 pixels
SSIM_MIN_SIDE = 7


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over RGB, peak 255 (inf for identical images)."""
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """SSIM averaged over RGB; None when the image is smaller than the 7x7 window."""
    if min(a.shape[:2]) < SSIM_MIN_SIDE:
        return None
    # float32 input: the same value to 1e-6, and about twice as fast as the float64 default.
    return float(structural_similarity(a.astype(np.float32), b.astype(np.float32), channel_axis=2,
                                       data_range=255))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM on RGB in [0, 1]; None when the image is too small for its five scales."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()
    return float(_ms_ssim(t(a), t(b), data_range=255))


def bpp(num_bytes: int, width: int, height: int) -> float:
    """The only bitrate we report: 8 x whole file bytes / pixels."""
    return 8 * num_bytes / (width * height)
