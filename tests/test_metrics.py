"""The quality metrics: MS-SSIM is pytorch-msssim's definition, computed faster."""
import numpy as np
import pytest

from cycleapp.metrics import MS_SSIM_MIN_SIDE, ms_ssim, ssim


def pair(shape, noise, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    return a, np.clip(a.astype(int) + rng.integers(-noise, noise + 1, a.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(161, 170), (163, 201), (175, 333), (512, 768)])
def test_ms_ssim_is_pytorch_msssim(shape, photo):
    import torch
    from pytorch_msssim import ms_ssim as reference

    t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()
    a = np.resize(photo, (*shape, 3)) if shape[0] > photo.shape[0] else photo[:shape[0], :shape[1]]
    b = np.clip(a.astype(int) + np.random.default_rng(1).integers(-12, 13, a.shape), 0, 255).astype(np.uint8)
    for x, y in [(a, b), pair(shape, 40)]:  # a photo and noise, odd and even sides at every scale
        assert ms_ssim(x, y) == pytest.approx(float(reference(t(x), t(y), data_range=255)), abs=2e-6)


def test_metrics_of_small_images_and_identical_ones():
    a, b = pair((MS_SSIM_MIN_SIDE - 1, 300), 10)
    assert ms_ssim(a, b) is None and ssim(a, b) is not None
    assert ssim(*pair((6, 50), 10)) is None
    a, _ = pair((MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE), 10)
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
