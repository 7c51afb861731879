"""Image quality metrics: PSNR and SSIM as scikit-image computes them, MS-SSIM as pytorch-msssim
does, to the last bit (tests/test_evaluate.py checks them against those libraries' own functions).

SSIM and MS-SSIM filter the original and the reconstruction alike, and the original's part (its
local means and variances, at every scale) is the same for every file measured against it:
`Original` computes that once for all of them (`ssim(a, b)` is `Original(a).ssim(b)`). With
MS-SSIM's steps done in place, seven files of a 2K photo take 4.6 s of CPU on these two metrics,
where the libraries' functions took 7.8 s (one thread; tests/bench_app.py's 2K photo).
"""
from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, gaussian_filter
from scipy.ndimage import uniform_filter
from skimage.metrics import peak_signal_noise_ratio
from skimage.util import crop

MS_SSIM_MIN_SIDE = 161  # 5 scales with an 11-pixel window need more than (11 - 1) * 2**4 pixels
SSIM_MIN_SIDE = 7

# scikit-image's structural_similarity defaults (uniform 7x7 window, sample covariance) and
# pytorch-msssim's ms_ssim defaults (11-tap Gaussian, sigma 1.5, five scales), data range 255
SSIM_WINDOW, K1, K2, DATA_RANGE = 7, 0.01, 0.03, 255
C1, C2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
COV_NORM = SSIM_WINDOW ** 2 / (SSIM_WINDOW ** 2 - 1)  # scikit-image's sample covariance
MS_SSIM_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]


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
    return Original(a).ssim(b)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM on RGB in [0, 1]; None when the image is too small for its five scales."""
    return Original(a).ms_ssim(b)


class Original:
    """An original image that reconstructions are measured against: what SSIM and MS-SSIM compute
    on it alone is computed once (on first use, or by `prepare`, e.g. while a codec encodes it),
    then shared by every file measured against it, from any thread.

    It keeps its local means and variances: 24 bytes a pixel for SSIM, 63 for MS-SSIM's five scales
    (243 MB for a 2K photo), so it lives as long as one comparison."""

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb
        self._ssim_lock, self._ms_ssim_lock = threading.Lock(), threading.Lock()
        self._ssim: list | None = None  # per channel: (mean, variance), float32 planes
        self._ms_ssim: list | None = None  # per scale: (image, mean, mean squared, variance), tensors

    def prepare(self) -> Original:
        """Compute now what the metrics need of the original (otherwise done on first use)."""
        side = min(self.rgb.shape[:2])
        if side >= SSIM_MIN_SIDE:
            self._ssim_stats()
        if side >= MS_SSIM_MIN_SIDE:
            self._ms_ssim_stats()
        return self

    def psnr(self, b: np.ndarray) -> float:
        return psnr(self.rgb, b)

    def ssim(self, b: np.ndarray) -> float | None:
        """scikit-image's structural_similarity(a, b, channel_axis=0, data_range=255) on float32
        planes (the mean of the three channels' SSIM), step by step as it does it. float32: the
        same value to 1e-6 as its float64 default, and about twice as fast."""
        if min(self.rgb.shape[:2]) < SSIM_MIN_SIDE:
            return None
        cov_norm, c1, c2 = COV_NORM, C1, C2
        a_planes, b_planes = _planes(self.rgb), _planes(b)
        mssim = np.empty(3, dtype=np.float32)
        for ch, ((ux, vx), im1, im2) in enumerate(zip(self._ssim_stats(), a_planes, b_planes)):
            uy = uniform_filter(im2, size=SSIM_WINDOW)
            uyy = uniform_filter(im2 * im2, size=SSIM_WINDOW)
            uxy = uniform_filter(im1 * im2, size=SSIM_WINDOW)
            vy = cov_norm * (uyy - uy * uy)
            vxy = cov_norm * (uxy - ux * uy)
            a1, a2, b1, b2 = 2 * ux * uy + c1, 2 * vxy + c2, ux ** 2 + uy ** 2 + c1, vx + vy + c2
            s = (a1 * a2) / (b1 * b2)
            mssim[ch] = crop(s, (SSIM_WINDOW - 1) // 2).mean(dtype=np.float64)
        return float(mssim.mean())

    def ms_ssim(self, b: np.ndarray) -> float | None:
        """pytorch-msssim's ms_ssim(a, b, data_range=255), step by step as it does it."""
        if min(self.rgb.shape[:2]) < MS_SSIM_MIN_SIDE:
            return None
        c1, c2 = C1, C2
        win = _ms_ssim_window()
        y = _channels_last(b)
        mcs = []
        for i, (x, mu1, mu1_sq, sigma1_sq) in enumerate(self._ms_ssim_stats()):
            # its steps, in place where it makes a new image of the same size (33 MB each for a 2K
            # photo, which glibc's default gives back to the system on free, to be zero-filled anew)
            mu2 = gaussian_filter(y, win)
            mu2_sq = mu2.pow(2)
            mu1_mu2 = mu1 * mu2
            del mu2
            sigma2_sq = gaussian_filter(y * y, win).sub_(mu2_sq)  # its `1.0 *`: the same bits
            sigma12 = gaussian_filter(x * y, win).sub_(mu1_mu2)
            # (2 sigma12 + C2) / (sigma1_sq + sigma2_sq + C2); a + b is b + a to the bit
            cs_map = sigma12.mul_(2).add_(c2).div_(sigma2_sq.add_(sigma1_sq).add_(c2))
            del sigma2_sq
            # ((2 mu1_mu2 + C1) / (mu1_sq + mu2_sq + C1)) * cs_map
            ssim_map = mu1_mu2.mul_(2).add_(c1).div_(mu2_sq.add_(mu1_sq).add_(c1)).mul_(cs_map)
            del mu2_sq
            ssim_per_channel = torch.flatten(ssim_map, 2).mean(-1)
            if i < len(MS_SSIM_WEIGHTS) - 1:
                mcs.append(torch.relu(torch.flatten(cs_map, 2).mean(-1)))
                y = F.avg_pool2d(y, kernel_size=2, padding=[s % 2 for s in y.shape[2:]])
        weights = y.new_tensor(MS_SSIM_WEIGHTS)
        mcs_and_ssim = torch.stack(mcs + [torch.relu(ssim_per_channel)], dim=0)
        return float(torch.prod(mcs_and_ssim ** weights.view(-1, 1, 1), dim=0).mean())

    def _ssim_stats(self) -> list:
        with self._ssim_lock:
            if self._ssim is None:
                stats = []
                for im1 in _planes(self.rgb):
                    ux = uniform_filter(im1, size=SSIM_WINDOW)
                    uxx = uniform_filter(im1 * im1, size=SSIM_WINDOW)
                    stats.append((ux, COV_NORM * (uxx - ux * ux)))
                self._ssim = stats
            return self._ssim

    def _ms_ssim_stats(self) -> list:
        with self._ms_ssim_lock:
            if self._ms_ssim is None:
                win, x, stats = _ms_ssim_window(), _channels_last(self.rgb), []
                for i in range(len(MS_SSIM_WEIGHTS)):
                    mu1 = gaussian_filter(x, win)
                    mu1_sq = mu1.pow(2)
                    stats.append((x, mu1, mu1_sq, 1.0 * (gaussian_filter(x * x, win) - mu1_sq)))
                    if i < len(MS_SSIM_WEIGHTS) - 1:
                        x = F.avg_pool2d(x, kernel_size=2, padding=[s % 2 for s in x.shape[2:]])
                self._ms_ssim = stats
            return self._ms_ssim


def _ms_ssim_window() -> torch.Tensor:
    """pytorch-msssim's window: the 11-tap Gaussian of sigma 1.5, one per channel."""
    return _fspecial_gauss_1d(11, 1.5).repeat([3, 1, 1, 1])


def _planes(rgb: np.ndarray) -> np.ndarray:
    """float32 (3, H, W), each channel contiguous: not a strided slice of the RGB pixels, whose
    filtering is slower and runs worse beside another thread's (0.73 s for two 2K images at once,
    1.14 s strided)."""
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
