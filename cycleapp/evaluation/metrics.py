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
    # float32 input: the same value to the last bit (8-bit differences and their squares are exact
    # in float32, and the mean is summed in float64 either way), half the memory of the float64
    # copies scikit-image makes of 8-bit input (4 x 67 MB for a 2K image, a quarter second).
    return float(peak_signal_noise_ratio(a.astype(np.float32), b.astype(np.float32), data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """SSIM averaged over RGB; None when the image is smaller than the 7x7 window."""
    if min(a.shape[:2]) < SSIM_MIN_SIDE:
        return None
    # float32 input: the same value to 1e-6, and about twice as fast as the float64 default. Each
    # channel a contiguous plane (channel_axis 0), not a strided slice of the RGB pixels: the same
    # value, and two at once in threads run side by side (0.73 s for two 2K images, 1.14 s strided).
    return float(structural_similarity(_planes(a), _planes(b), channel_axis=0, data_range=255))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM on RGB in [0, 1]; None when the image is too small for its five scales."""
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    return float(_ms_ssim(_channels_last(a), _channels_last(b), data_range=255))


def _planes(rgb: np.ndarray) -> np.ndarray:
    """float32 (3, H, W), each channel contiguous."""
    return np.ascontiguousarray(np.moveaxis(rgb, 2, 0), dtype=np.float32)


def _channels_last(rgb: np.ndarray) -> torch.Tensor:
    """float32 (1, 3, H, W) in torch's channels-last layout (the RGB pixels' own order), with a
    proper batch stride. A view made with `permute(2, 0, 1)[None]` has a batch stride of 3, which
    torch does not take for channels-last: its convolutions then run in the planar layout, where
    pytorch-msssim's Gaussian filters (groups=3, 11x1 and 1x11) are about ten times slower; this
    way MS-SSIM of a 2K image takes 0.6 s on one thread, not 1.5 s, the value the same to 1.2e-7."""
    h, w, _ = rgb.shape
    out = torch.empty((1, 3, h, w), memory_format=torch.channels_last)
    out.copy_(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None])
    return out


def bpp(num_bytes: int, width: int, height: int) -> float:
    """The only bitrate we report: 8 x whole file bytes / pixels."""
    return 8 * num_bytes / (width * height)
