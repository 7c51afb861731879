"""High rates, near-lossless and lossless, measured on a folder of photos (real files throughout).

    python -m train.highrate ../shared/data/kodak --out train/results/highrate-kodak.json

Per photo:
- the learned codec's curve: the five code sizes, then the layered codec (largest code size plus an
  enhancement layer) at LADDER_POINTS; whether PSNR ever falls as the file grows (0.05 dB);
- in the band 0.75 to 4 bpp, JPEG 2000 and AVIF matched to each of our files' sizes, as the app
  does: the mean PSNR difference at the same bytes, and the per-image PSNR BD-rate over the band;
- lossless sizes: ours, PNG (optimised), WebP lossless (method 6), JPEG XL lossless (effort 7),
  JPEG-LS (CharLS through imagecodecs); near-lossless at N = 1, 2, 4 against JPEG-LS at the same N.
The report prints means over the photos; the JSON keeps every photo's numbers.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from cycleapp import api
from cycleapp.core import codec
from cycleapp.core import learned
from cycleapp.evaluation import registry
from cycleapp.imageio import read_image
from cycleapp.core.rate import match_size
from cycleapp.evaluation.metrics import psnr
from train.errors import command
from train.evaluate import bd_rate

LADDER_POINTS = (60, 78, 90, 100, 108, 114, 120, 128)  # layered: about 0.5 bpp to 52 dB
BAND = (0.75, 4.0)  # bpp
NEAR = (1, 2, 4)
TOLERANCE_DB = 0.05


def lossless_sizes(rgb: np.ndarray) -> dict[str, int]:
    """Bytes of each lossless coder's file of an image."""
    image = Image.fromarray(rgb)

    def pillow(fmt, **options):
        buf = io.BytesIO()
        image.save(buf, format=fmt, **options)
        return len(buf.getvalue())

    ours = api.encode(rgb, lossless=True)
    sizes = {"cycle": len(ours), "cycle_exact": bool(np.array_equal(codec.decode(ours), rgb)), "png": pillow("PNG", optimize=True),
             "webp": pillow("WEBP", lossless=True, quality=100, method=6),
             "jxl": pillow("JXL", lossless=True, effort=7), "jpegls": len(imagecodecs.jpegls_encode(rgb))}
    return sizes


def near_lossless(rgb: np.ndarray) -> dict[str, dict]:
    out = {}
    for n in NEAR:
        ours = api.encode(rgb, max_error=n)
        error = int(np.abs(codec.decode(ours).astype(np.int16) - rgb).max())
        jls = imagecodecs.jpegls_encode(rgb, level=n)
        jls_error = int(np.abs(imagecodecs.jpegls_decode(jls).astype(np.int16) - rgb).max())
        out[str(n)] = {"cycle": len(ours), "cycle_max_error": error, "jpegls": len(jls), "jpegls_max_error": jls_error}
    return out


def curve(rgb: np.ndarray) -> list[dict]:
    """The learned codec's points, smallest file first: (bpp, psnr, what)."""
    pixels = rgb.shape[0] * rgb.shape[1]
    points = []
    for entry in learned.presets():
        data = entry.encode(rgb)
        points.append({"bpp": 8 * len(data) / pixels, "psnr": psnr(rgb, entry.decode(data)), "setting": entry.variant})
    layered = learned.layered().for_image(rgb)
    for setting in LADDER_POINTS:
        data = layered.encode(rgb, setting)
        points.append({"bpp": 8 * len(data) / pixels, "psnr": psnr(rgb, layered.decode(data)),
                       "setting": layered.describe(setting)})
    return sorted(points, key=lambda p: p["bpp"])


def matched(rgb: np.ndarray, points: list[dict], name: str) -> list[dict]:
    """A classical codec matched to the size of each of our points in the band."""
    pixels = rgb.shape[0] * rgb.shape[1]
    entry = registry.get(name)
    out = []
    for p in points:
        if BAND[0] <= p["bpp"] <= BAND[1]:
            m = match_size(entry, rgb, round(p["bpp"] * pixels / 8))
            out.append({"bpp": 8 * len(m.data) / pixels, "psnr": psnr(rgb, entry.decode(m.data)), "ours_bpp": p["bpp"],
                        "ours_psnr": p["psnr"]})
    return out


def measure(path: Path, lossless_only: bool = False) -> dict:
    rgb = read_image(str(path)).rgb
    if lossless_only:
        return {"image": path.name, "lossless": lossless_sizes(rgb), "pixels": rgb.shape[0] * rgb.shape[1]}
    points = curve(rgb)
    falls = [round(b["psnr"] - a["psnr"], 3) for a, b in zip(points, points[1:]) if b["psnr"] < a["psnr"] - TOLERANCE_DB]
    result = {"image": path.name, "curve": points, "falls": falls, "lossless": lossless_sizes(rgb),
              "near_lossless": near_lossless(rgb), "pixels": rgb.shape[0] * rgb.shape[1]}
    for name in ("jpeg2000", "avif"):
        result[name] = matched(rgb, points, name)
    return result


def band_bd(result: dict, name: str) -> float | None:
    """Per-image PSNR BD-rate (%) of our band points against a codec's points matched to them."""
    rows = result[name]
    if len(rows) < 4:
        return None
    ours = {"bpp": [r["ours_bpp"] for r in rows], "psnr": [r["ours_psnr"] for r in rows]}
    theirs = {"bpp": [r["bpp"] for r in rows], "psnr": [r["psnr"] for r in rows]}
    return bd_rate(theirs, ours)


def report(results: list[dict]) -> list[str]:
    lines = [f"{len(results)} photos"]
    if "curve" not in results[0]:
        return lines + lossless_report(results)
    falls = sum(len(r["falls"]) for r in results)
    lines.append(f"PSNR falls over 0.05 dB as the file grows: {falls} (in {sum(bool(r['falls']) for r in results)} photos)")
    for name in ("jpeg2000", "avif"):
        gaps = [r2["ours_psnr"] - r2["psnr"] for r in results for r2 in r[name]]
        bds = [b for r in results if (b := band_bd(r, name)) is not None]
        if gaps:
            lines.append(f"vs {name}, {BAND[0]}-{BAND[1]} bpp, same bytes: mean PSNR difference {np.mean(gaps):+.2f} dB "
                         f"over {len(gaps)} points; per-image BD-rate mean {np.mean(bds):+.1f} % "
                         f"(median {np.median(bds):+.1f} %, {len(bds)} photos)")
    lines += lossless_report(results)
    for n in NEAR:
        ours = np.mean([8 * r["near_lossless"][str(n)]["cycle"] / r["pixels"] for r in results])
        jls = np.mean([8 * r["near_lossless"][str(n)]["jpegls"] / r["pixels"] for r in results])
        worst = max(r["near_lossless"][str(n)]["cycle_max_error"] for r in results)
        lines.append(f"near-lossless N={n}: cycle {ours:.3f} bpp (largest error {worst}), JPEG-LS {jls:.3f} bpp")
    peak = [max(p["psnr"] for p in r["curve"] if np.isfinite(p["psnr"])) for r in results]
    lines.append(f"best lossy PSNR per photo: min {min(peak):.2f} dB")
    return lines


def lossless_report(results: list[dict]) -> list[str]:
    exact = sum(r["lossless"]["cycle_exact"] for r in results)
    sizes = {k: np.mean([8 * r["lossless"][k] / r["pixels"] for r in results])
             for k in results[0]["lossless"] if k != "cycle_exact"}
    return [f"lossless files that decode bit-exact: {exact} of {len(results)}",
            "lossless, mean bpp: " + ", ".join(f"{k} {v:.3f}" for k, v in sizes.items())]


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--lossless-only", action="store_true", help="only the lossless sizes and the bit-exact check")
    args = p.parse_args(argv)
    paths = sorted(q for q in Path(args.data).iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = paths[:args.limit] if args.limit else paths
    results = []
    for path in paths:  # the JSON rewritten after each photo: a long run stopped early keeps its photos
        results.append(measure(path, args.lossless_only))
        print(path.name, results[-1]["lossless"], "falls", results[-1].get("falls"), flush=True)
        lines = report(results)
        Path(args.out).write_text(json.dumps({"report": lines, "images": results}, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
