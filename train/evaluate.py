"""Rate-distortion evaluation (placeholder: helpers used during training)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cycleapp import codec
from cycleapp.imageio import load_rgb
from cycleapp.metrics import bpp, psnr
from train.data import SHARED, image_files


def kodak_dir() -> Path | None:
    d = SHARED / "kodak"
    return d if d.is_dir() else None


def measure_checkpoint(ckpt, directory: Path, limit: int | None = None) -> dict:
    """Mean real-file bpp and PSNR of one checkpoint over a folder (decoded from the bytes)."""
    rates, quality = [], []
    files = image_files(directory)[:limit]
    for path in files:
        rgb = load_rgb(path)
        data = codec.encode(ckpt, rgb)
        rates.append(bpp(len(data), rgb.shape[1], rgb.shape[0]))
        quality.append(psnr(rgb, codec.decode(data, ckpt)))
    return {"bpp": float(np.mean(rates)), "psnr": float(np.mean(quality)), "images": len(files)}
