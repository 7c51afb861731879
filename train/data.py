"""Training images in memory and random crops from them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from train.errors import TrainError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "cycleapp" / "examples"


def default_train_dir() -> Path:
    """../shared/data/train when present, else the example images shipped in the repo."""
    return SHARED / "train" if (SHARED / "train").is_dir() else EXAMPLES


def kodak_dir() -> Path | None:
    """../shared/data/kodak when present (validation and reporting only, never training)."""
    d = SHARED / "kodak"
    return d if d.is_dir() else None


def image_files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load_images(directory: Path, min_side: int, half_scale_above: int = 1024) -> list[torch.Tensor]:
    """All images as (3, H, W) uint8 tensors; large ones also at half scale (closer to Kodak)."""
    images = []
    for path in image_files(directory):
        img = Image.open(path).convert("RGB")
        versions = [img]
        if max(img.size) > half_scale_above:
            versions.append(img.resize((img.width // 2, img.height // 2), Image.Resampling.BOX))
        for v in versions:
            if min(v.size) >= min_side:
                images.append(torch.from_numpy(np.array(v)).permute(2, 0, 1).contiguous())
    if not images:
        raise TrainError(f"no training images of at least {min_side}x{min_side} in {directory}")
    return images


class CropSampler:
    """Random crops with flips, images drawn in proportion to their area.

    The crops are cut on the images' own device: on a GPU, keep the images there (uint8) so no
    batch crosses the bus.
    """

    def __init__(self, images: list[torch.Tensor], patch: int, generator: torch.Generator):
        self.images, self.patch, self.g = images, patch, generator
        self.weights = torch.tensor([float(i.shape[1] * i.shape[2]) for i in images])

    def batch(self, size: int) -> torch.Tensor:
        out = torch.empty(size, 3, self.patch, self.patch, device=self.images[0].device)
        picks = torch.multinomial(self.weights, size, replacement=True, generator=self.g)
        for j, i in enumerate(picks.tolist()):
            img = self.images[i]
            top = int(torch.randint(img.shape[1] - self.patch + 1, (1,), generator=self.g))
            left = int(torch.randint(img.shape[2] - self.patch + 1, (1,), generator=self.g))
            crop = img[:, top:top + self.patch, left:left + self.patch].float() / 255
            if torch.rand(1, generator=self.g) < 0.5:
                crop = crop.flip(2)
            out[j] = crop
        return out
