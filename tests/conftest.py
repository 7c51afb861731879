import os
import subprocess
import sys
from pathlib import Path

# One thread for torch and BLAS, here and in every process a test starts (set before numpy and
# torch are imported): with two threads on two cores, any other busy process (an app server, a
# browser, another run) makes each of torch's many small parallel operations wait for a core, and
# a test runs up to ten times slower (MS-SSIM of a 256x256 image: 0.03 s on one thread, 1.5 s on
# two on a loaded machine). OMP_NUM_THREADS=2 pytest ... still runs them on two.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "cycleapp" / "examples"
sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def ckpt():
    """The smallest shipped checkpoint (the real weights, not a stand-in)."""
    from cycleapp.core import checkpoint

    return checkpoint.by_name(checkpoint.available()[0].stem)


@pytest.fixture(scope="session")
def photo():
    from cycleapp.imageio import load_rgb

    return load_rgb(EXAMPLES / "kodim23.png")


@pytest.fixture
def noise_image():
    def make(h, w, seed=0):
        rng = np.random.default_rng(seed)
        base = np.linspace(0, 255, w, dtype=np.float64)[None, :, None] * np.ones((h, 1, 3))
        return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    return make


def run_cli(*args, cwd=None):
    """Run `python -m cycleapp ...` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "cycleapp", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))


def at_thread_counts(make, counts=(1, 2, 3)) -> dict:
    """{n: make()} with PyTorch set to n threads, each call leaving that setting as it found it
    (checked); the caller's setting restored after."""
    import torch

    before = torch.get_num_threads()
    made = {}
    try:
        for n in counts:
            torch.set_num_threads(n)
            made[n] = make()
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
    return made
