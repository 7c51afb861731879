"""Where the bits and the error go, per code size, on one or more folders of images side by side.

    python -m train.diagnose ../shared/data/kodak ../shared/data/dev/clic2025-val --limit 8

For every code size and folder (mean over the images, every one a real `.cyc` file):
- bpp of the file, and the share of it spent on the header, the coding tables' moves for this image,
  the DC channel, and each channel group after it, split into the positions of its first pass (a
  quarter, decoded before any of the group's own symbols: `entropy.phases`) and those of its later
  three passes (which also read their decoded neighbours in the same channel); the shares are ideal bits (-log2 p under the shipped tables, moved
  as the encoder moves them for the image), which the ANS coder meets within a fraction of a
  percent (the "coder" column: real payload over ideal bits);
- the distortion ceiling: PSNR of the decoder fed the unquantised code (what the transform alone
  loses), then of the quantised code (what the file gives): the gap is the quantiser's;
- with --versus CODEC, where the error goes against that codec at the same file size: the 16x16
  blocks of the image in four classes of activity (the original block's standard deviation), and
  the mean squared error of each codec in each class.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from cycleapp.core import checkpoint as ckpts
from cycleapp.core import codec
from cycleapp.evaluation import registry
from cycleapp.core.entropy import groups, moves_bits, phases
from cycleapp.imageio import load_rgb
from cycleapp.core.rate import match_size
from cycleapp.evaluation.metrics import psnr
from cycleapp.core.model import FACTOR
from train.data import image_files
from train.errors import TrainError, command


def ideal_bits(tables, q: torch.Tensor, moves: np.ndarray | None = None) -> tuple[float, float, torch.Tensor]:
    """Bits of the tables' moves, of the DC, and of every AC symbol (C - 1, H, W), under the coding
    tables moved by `moves`, by default as the encoder moves them for this code."""
    moves = tables.adaptation(q.numpy()) if moves is None else moves
    tables = tables.shifted(moves)
    s = tables.symbols(q[None])[0]
    ac = tables.bits(tables.table(tables.contexts(s[None])[0, 1:]), s[1:])
    return moves_bits(moves), float(tables.dc_bits(s[0].numpy()).sum()), ac


@torch.no_grad()
def diagnose(ckpt, rgb: np.ndarray) -> dict:
    h, w = rgb.shape[:2]
    pixels = h * w
    data = codec.encode(ckpt, rgb)
    q = codec.quantized_code(ckpt, rgb)[0].to(torch.int64)
    move_bits, dc_bits, ac = ideal_bits(ckpt.tables, q)
    first = phases(*q.shape[1:]) == 0
    row = {"bpp": 8 * len(data) / pixels, "header": 8 * (len(data) - len(ckpt.tables.encode(q.numpy()))) / pixels,
           "table moves": move_bits / pixels, "dc": dc_bits / pixels}
    for start, end in groups(q.shape[0]):
        part = ac[start - 1:end - 1]
        row[f"{start}-{end - 1} first pass"] = float(part[:, first].sum()) / pixels
        row[f"{start}-{end - 1} later passes"] = float(part[:, ~first].sum()) / pixels
    ideal = sum(v for k, v in row.items() if k not in ("bpp", "header"))
    row["coder"] = (row["bpp"] - row["header"]) / ideal
    padded = np.pad(rgb, ((0, -h % FACTOR), (0, -w % FACTOR), (0, 0)), mode="edge")  # whole blocks
    y = ckpt.model.encode(codec.to_tensor(padded), 0)  # one pass: diagnosis images are photo-sized
    row["psnr unquantised"] = psnr(rgb, codec.to_pixels(ckpt.model.decode(y, 0)[..., :h, :w]))
    row["psnr"] = psnr(rgb, codec.reconstruct_from_code(ckpt, q[None], h, w))
    row["zeros"] = float((q[1:] == 0).double().mean())
    row["predicted channels"] = int((ckpt.tables.predictor[1:] > 0).sum())
    return row


ACTIVITY_EDGES = (2, 6, 15)  # block standard deviation (8-bit levels): flat | smooth | textured | busy
ACTIVITY_NAMES = ("flat (<2)", "smooth (2-6)", "textured (6-15)", "busy (>15)")


def error_by_activity(ckpt, other: str, rgb: np.ndarray) -> dict:
    """Per activity class of 16x16 blocks: its share of the blocks, and the summed squared error of
    the cycle model and of `other` matched to the same file size."""
    data = codec.encode(ckpt, rgb)
    entry = registry.get(other)
    theirs = entry.decode(match_size(entry, rgb, len(data)).data)
    h, w = rgb.shape[0] // 16 * 16, rgb.shape[1] // 16 * 16
    blocks = lambda a: a[:h, :w].astype(np.float64).reshape(h // 16, 16, w // 16, 16, 3)
    classes = np.digitize(blocks(rgb).std(axis=(1, 3)).mean(-1).ravel(), ACTIVITY_EDGES)
    error = lambda decoded: ((blocks(decoded) - blocks(rgb)) ** 2).mean(axis=(1, 3, 4)).ravel()
    ours, other_error = error(codec.decode(data, ckpt)), error(theirs)
    return {name: (float((classes == k).sum()), float(ours[classes == k].sum()),
                   float(other_error[classes == k].sum())) for k, name in enumerate(ACTIVITY_NAMES)}


def activity_report(per_image: list[dict], other: str) -> str:
    total = {k: np.sum([r[k] for r in per_image], axis=0) for k in ACTIVITY_NAMES}
    excess = sum(max(v[1] - v[2], 0) for v in total.values())
    blocks = sum(v[0] for v in total.values())
    lines = [f"  {'blocks':16s} {'share':>6s} {'MSE cycle':>10s} {'MSE ' + other:>14s} {'excess share':>13s}"]
    for name, (n, ours, theirs) in total.items():
        lines.append(f"  {name:16s} {n / blocks:6.2f} {ours / max(n, 1):10.2f} {theirs / max(n, 1):14.2f} "
                     f"{max(ours - theirs, 0) / max(excess, 1e-9):13.2f}")
    return "\n".join(lines)


def mean_rows(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def report(results: dict) -> str:
    """One block per code size: a row per measure, a column per folder."""
    lines = []
    folders = list(results)
    for size in results[folders[0]]:
        lines.append(f"\n{size}: " + " | ".join(f"{f} ({results[f][size]['images']} images)" for f in folders))
        keys = [k for k in results[folders[0]][size] if k != "images"]
        for k in keys:
            cells = []
            for f in folders:
                r = results[f][size]
                v = r.get(k)
                if v is None:
                    cells.append("-")
                elif k == "predicted channels":
                    cells.append(f"{v:.0f}")
                elif k in ("bpp", "coder", "zeros") or k.startswith("psnr"):
                    cells.append(f"{v:.3f}" if not k.startswith("psnr") else f"{v:.2f} dB")
                else:  # a share of the file
                    cells.append(f"{v:.4f} ({100 * v / r['bpp']:4.1f} %)")
            lines.append(f"  {k:22s} " + "   ".join(c.rjust(18) for c in cells))
    return "\n".join(lines)


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", type=Path, nargs="+", help="folders of images, reported side by side")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each folder")
    p.add_argument("--sizes", default=None, help="comma-separated code sizes (default: all)")
    p.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    p.add_argument("--versus", default=None, help="a classical codec: where the error goes against it")
    args = p.parse_args(argv)
    available = [path.stem for path in ckpts.available()]
    names = args.sizes.split(",") if args.sizes else available
    if unknown := [n for n in names if n not in available]:
        raise TrainError(f"unknown code size {', '.join(unknown)} (available: {', '.join(available)})")
    if args.versus and args.versus not in registry.matchable():
        raise TrainError(f"unknown codec {args.versus} (choose from {', '.join(registry.matchable())})")
    results = {}
    for folder in args.folders:
        files = image_files(folder)[:args.limit] if folder.is_dir() else []
        if not files:
            raise TrainError(f"no images in {folder}")
        images = [load_rgb(f) for f in files]
        results[folder.name] = {}
        for name in names:
            ckpt = ckpts.by_name(name)
            results[folder.name][name] = mean_rows([diagnose(ckpt, rgb) for rgb in images]) | {"images": len(files)}
            if args.versus:
                per_image = [error_by_activity(ckpt, args.versus, rgb) for rgb in images]
                results[folder.name][name + " blocks"] = activity_report(per_image, args.versus)
    blocks = {f: {k: v for k, v in r.items() if k.endswith(" blocks")} for f, r in results.items()}
    for f, r in results.items():
        for k in blocks[f]:
            del r[k]
    print(report(results))
    for f, r in blocks.items():
        for k, text in r.items():
            print(f"\n{f}, {k[:-len(' blocks')]}: error by block activity, against {args.versus} at the same size")
            print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
