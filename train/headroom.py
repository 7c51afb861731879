"""Where the bits could still come from: how far the shipped entropy model is from the best it could
be with its own contexts, and what block side information (what a hyperprior sends) could add.

    python -m train.headroom --images ../shared/data/train/cid22 --limit 60

For each code size, on the RDOQ-rounded codes of the images (split in two halves: tables are chosen
on the first, bits counted on the second, so the gains are not flattered by fitting the test data):
- shipped: ideal bits of every channel after the DC under the shipped coding tables;
- refit: the same contexts, each (channel, context) given the best of the coding tables (`entropy.ac_tables`);
- + block classes: each (channel, context) further split by a class sent per BLOCK x BLOCK block of
  code positions and channel group (a bucket of the block's magnitude sum), its bits included.
All in bits per pixel; the DC channel and the file header are not counted (they do not change).
"shipped" is the tables as stored, before format 5's per-image moves (`CodingTables.adaptation`),
which take part of what "refit" finds, image by image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cycleapp.core import checkpoint as ckpts
from cycleapp.core.codec import quantized_code
from cycleapp.core.entropy import CONTEXTS, TABLES, bucket, groups
from cycleapp.imageio import load_rgb
from train.calibrate import add_bits
from train.data import SHARED, image_files
from train.errors import TrainError, command

CLASSES = 8


def block_classes(q: torch.Tensor, block: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Class of every AC value (C - 1, H, W) and each group's class map (the side information)."""
    mag = q[1:].abs()
    h, w = mag.shape[-2:]
    out = torch.zeros_like(mag)
    maps = []
    for start, end in groups(q.shape[0]):
        total = F.avg_pool2d(mag[start - 1:end - 1].sum(0)[None, None].double(), block, ceil_mode=True) * block ** 2
        classes = bucket(total.round().to(torch.int64), CLASSES)[0, 0]
        maps.append(classes.ravel())
        out[start - 1:end - 1] = classes.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    return out, maps


def costs(ckpt, images: list[np.ndarray], block: int):
    """Bits under each table, per (channel, context) and per (channel, context, class); class counts."""
    ac = ckpt.channels - 1
    every = torch.arange(TABLES)  # each cell's bits under every table of the family
    plain = torch.zeros(ac * CONTEXTS, TABLES, dtype=torch.float64)
    split = torch.zeros(ac * CONTEXTS * CLASSES, TABLES, dtype=torch.float64)
    side = torch.zeros(len(groups(ckpt.channels)), CLASSES, dtype=torch.float64)
    channel = torch.arange(ac).view(-1, 1, 1)
    for rgb in images:
        q = quantized_code(ckpt, rgb)[0].to(torch.int64)
        symbols = ckpt.tables.symbols(q[None])[0]
        cell = channel * CONTEXTS + ckpt.tables.contexts(symbols[None])[0, 1:]
        classes, maps = block_classes(q, block)
        add_bits(plain, cell, symbols[1:], ckpt.tables, every)
        add_bits(split, cell * CLASSES + classes, symbols[1:], ckpt.tables, every)
        for g, m in enumerate(maps):
            side[g] += torch.bincount(m, minlength=CLASSES)
    return plain, split, side


def headroom(ckpt, fit_images, test_images, block: int) -> dict:
    fit_plain, fit_split, fit_side = costs(ckpt, fit_images, block)
    plain, split, side = costs(ckpt, test_images, block)
    pixels = sum(rgb.shape[0] * rgb.shape[1] for rgb in test_images)
    index = torch.from_numpy(ckpt.tables.index).ravel()
    shipped = plain.gather(1, index[:, None]).sum()

    def refit(fit, test, fallback):
        """Each cell's best table on the fit images (its shipped one if unseen), counted on the test."""
        choice = torch.where(fit.sum(1) > 0, fit.argmin(1), fallback)
        return test.gather(1, choice[:, None]).sum()

    same = refit(fit_plain, plain, index)
    by_class = refit(fit_split, split, index.repeat_interleave(CLASSES))
    class_p = (fit_side + 0.5) / (fit_side + 0.5).sum(1, keepdim=True)  # add-half: no zero probabilities
    side_bits = -(side * class_p.log2()).sum()
    return {name: float(v) / pixels for name, v in
            {"shipped": shipped, "refit": same, "classes": by_class + side_bits, "side": side_bits}.items()}


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=SHARED / "train" / "cid22")
    p.add_argument("--limit", type=int, default=60, help="images used (every k-th, k spreading them)")
    p.add_argument("--block", type=int, default=4, help="side-information block, in code positions")
    p.add_argument("--sizes", default=None, help="comma-separated code sizes (default: all)")
    args = p.parse_args(argv)
    if args.limit < 2 or args.block < 1:
        raise TrainError("--limit must be at least 2 and --block at least 1")
    available = [p.stem for p in ckpts.available()]
    names = args.sizes.split(",") if args.sizes else available
    if unknown := [n for n in names if n not in available]:
        raise TrainError(f"unknown code size {', '.join(unknown)} (available: {', '.join(available)})")
    files = image_files(args.images)
    if len(files) < 2:
        raise TrainError(f"need at least two images in {args.images}")
    files = files[::max(1, len(files) // args.limit)][:args.limit]
    images = [load_rgb(f) for f in files]
    fit_images, test_images = images[0::2], images[1::2]
    print(f"{len(fit_images)} images to choose tables, {len(test_images)} to count bits; AC channels, bpp")
    for name in names:
        r = headroom(ckpts.by_name(name), fit_images, test_images, args.block)
        print(f"{name:7s} shipped {r['shipped']:.4f}   refit {r['refit']:.4f} ({100 * (r['refit'] / r['shipped'] - 1):+.1f} %)"
              f"   + block classes {r['classes']:.4f} (side {r['side']:.4f}; {100 * (r['classes'] / r['shipped'] - 1):+.1f} %)",
              flush=True)


if __name__ == "__main__":
    main()
