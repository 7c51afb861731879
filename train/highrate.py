"""High rates, near-lossless and lossless, measured on a folder of photos (real files throughout).

    python -m train.highrate ../shared/data/kodak --out train/results/highrate-kodak.json

Per photo:
- the learned codec's files at a ladder of target sizes, each made as `--target-bytes` makes it
  (`rate.match_learned`): LADDER_TARGETS from the smallest file to 8 bpp (or the lossless size), and
  BAND_TARGETS; whether PSNR ever falls as the target rises (0.05 dB);
- in the band 0.75 to 4 bpp, JPEG 2000 and AVIF matched to each of our files' sizes, as the app
  does: the mean PSNR difference at the same bytes, and the per-image PSNR BD-rate over the band;
- lossless sizes: ours, PNG (optimised), WebP lossless (method 6), JPEG XL lossless (effort 7),
  JPEG-LS (CharLS through imagecodecs); near-lossless at N = 1, 2, 4 against JPEG-LS at the same N.
The report prints means over the photos; the JSON keeps every photo's numbers. `--lossy-only` skips
the other coders' lossless and the near-lossless files; `--lossless-only` measures only those.
"""
from __future__ import annotations

import argparse
import ctypes
import io
import json
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from cycleapp import api
from cycleapp.core import codec
from cycleapp.core import learned
from cycleapp.core.allocator import reuse_freed_memory
from cycleapp.evaluation import registry
from cycleapp.imageio import read_image
from cycleapp.core.rate import Made, match_learned, match_size
from cycleapp.evaluation.metrics import psnr
from train.errors import TrainError, command
from train.evaluate import bd_rate

LADDER_TARGETS = 12
BAND_TARGETS = (0.8, 1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0)  # bpp
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


def curve(rgb: np.ndarray, lossless_bytes: int) -> list[dict]:
    """The learned codec's files at the ladder of targets, smallest target first: (target, bpp,
    psnr, what made it, the match's note)."""
    pixels = rgb.shape[0] * rgb.shape[1]
    smallest = len(learned.presets()[0].encode(rgb, learned.CycleCodec.search.low))  # coarsest steps
    top = min(pixels, lossless_bytes)  # 8 bpp
    targets = {int(t) for t in np.geomspace(smallest, top, LADDER_TARGETS).round()}
    targets |= {round(b * pixels / 8) for b in BAND_TARGETS if b * pixels / 8 < top}
    points, made = [], Made(rgb)  # (the image's bases made once: the same files, sooner)
    for target in sorted(targets):
        m = match_learned(rgb, target, made)
        points.append({"target": target, "bpp": 8 * len(m.data) / pixels, "psnr": psnr(rgb, codec.decode(m.data)),
                       "setting": f"{m.variant} {m.setting}", "note": m.note})
    return points


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


def measure(path: Path, lossless_only: bool = False, lossy_only: bool = False) -> dict:
    rgb = read_image(str(path)).rgb
    if lossless_only:
        return {"image": path.name, "lossless": lossless_sizes(rgb), "near_lossless": near_lossless(rgb),
                "pixels": rgb.shape[0] * rgb.shape[1]}
    lossless = {"cycle": len(api.encode(rgb, lossless=True))} if lossy_only else lossless_sizes(rgb)
    points = curve(rgb, lossless["cycle"])
    falls = [round(b["psnr"] - a["psnr"], 3) for a, b in zip(points, points[1:]) if b["psnr"] < a["psnr"] - TOLERANCE_DB]
    result = {"image": path.name, "curve": points, "falls": falls, "lossless": lossless,
              "pixels": rgb.shape[0] * rgb.shape[1]}
    if not lossy_only:
        result["near_lossless"] = near_lossless(rgb)
    for name in ("jpeg2000", "avif"):
        result[name] = matched(rgb, points, name)
    return result


def lossy_rows(result: dict, name: str) -> list[dict]:
    """A codec's points matched to ours in the band, each of our files once (two targets can give
    the same file: in the gap below the lossless file, or above it) and our lossless file left out
    (its PSNR is infinite)."""
    rows, seen = [], set()
    for r in result[name]:
        if np.isfinite(r["ours_psnr"]) and r["ours_bpp"] not in seen:
            rows.append(r)
            seen.add(r["ours_bpp"])
    return rows


def band_bd(result: dict, name: str) -> float | None:
    """Per-image PSNR BD-rate (%) of our band points against a codec's points matched to them."""
    rows = lossy_rows(result, name)
    if len(rows) < 4:
        return None
    ours = {"bpp": [r["ours_bpp"] for r in rows], "psnr": [r["ours_psnr"] for r in rows]}
    theirs = {"bpp": [r["bpp"] for r in rows], "psnr": [r["psnr"] for r in rows]}
    return bd_rate(theirs, ours)


def report(results: list[dict]) -> list[str]:
    lines = [f"{len(results)} photos"]
    if "curve" not in results[0]:
        return lines + lossless_report(results) + near_lossless_report(results)
    falls = sum(len(r["falls"]) for r in results)
    lines.append(f"PSNR falls over 0.05 dB as the target rises: {falls} (in {sum(bool(r['falls']) for r in results)} photos)")
    for name in ("jpeg2000", "avif"):
        gaps = [r2["ours_psnr"] - r2["psnr"] for r in results for r2 in lossy_rows(r, name)]
        bds = [b for r in results if (b := band_bd(r, name)) is not None]
        if gaps:
            lines.append(f"vs {name}, {BAND[0]}-{BAND[1]} bpp, same bytes: mean PSNR difference {np.mean(gaps):+.2f} dB "
                         f"over {len(gaps)} points; per-image BD-rate mean {np.mean(bds):+.1f} % "
                         f"(median {np.median(bds):+.1f} %, {len(bds)} photos)")
    peak = [max(p["psnr"] for p in r["curve"] if np.isfinite(p["psnr"])) for r in results]
    lines.append(f"best lossy PSNR per photo: min {min(peak):.2f} dB")
    if "near_lossless" not in results[0]:
        return lines
    return lines + lossless_report(results) + near_lossless_report(results)


def near_lossless_report(results: list[dict]) -> list[str]:
    if "near_lossless" not in results[0]:
        return []
    lines = []
    for n in NEAR:
        ours = np.mean([8 * r["near_lossless"][str(n)]["cycle"] / r["pixels"] for r in results])
        jls = np.mean([8 * r["near_lossless"][str(n)]["jpegls"] / r["pixels"] for r in results])
        worst = max(r["near_lossless"][str(n)]["cycle_max_error"] for r in results)
        lines.append(f"near-lossless N={n}: cycle {ours:.3f} bpp (largest error {worst}), JPEG-LS {jls:.3f} bpp")
    return lines


def lossless_report(results: list[dict]) -> list[str]:
    exact = sum(r["lossless"]["cycle_exact"] for r in results)
    sizes = {k: np.mean([8 * r["lossless"][k] / r["pixels"] for r in results])
             for k in results[0]["lossless"] if k != "cycle_exact"}
    return [f"lossless files that decode bit-exact: {exact} of {len(results)}",
            "lossless, mean bpp: " + ", ".join(f"{k} {v:.3f}" for k, v in sizes.items())]


def _start_worker() -> None:
    """A worker keeps freed memory as the command line does (`allocator`), and asks Linux to end it
    when the run that started it ends (killed, too): no orphan keeps measuring. Elsewhere nothing
    (the pool's own shutdown ends its workers)."""
    reuse_freed_memory()
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--lossless-only", action="store_true", help="only lossless (sizes, bit-exact) and near-lossless")
    p.add_argument("--lossy-only", action="store_true", help="no other coder's lossless file, no near-lossless")
    p.add_argument("--jobs", type=int, default=1, help="photos measured at once, each in its own process")
    p.add_argument("--resume", action="store_true", help="keep the photos already in --out, measure the rest")
    args = p.parse_args(argv)
    paths = sorted(q for q in Path(args.data).iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg"))
    paths = paths[:args.limit] if args.limit else paths
    results = json.loads(Path(args.out).read_text())["images"] if args.resume and Path(args.out).exists() else []
    if results and ("curve" in results[0], "near_lossless" in results[0]) != \
            (not args.lossless_only, not args.lossy_only):
        raise TrainError(f"--resume: {args.out} was measured with other options (--lossy-only, --lossless-only)")
    done = {r["image"] for r in results}
    todo = [q for q in paths if q.name not in done]
    measure_one = partial(measure, lossless_only=args.lossless_only, lossy_only=args.lossy_only)
    with ProcessPoolExecutor(max(args.jobs, 1), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker) as pool:
        for result in pool.map(measure_one, todo):  # (in order) the JSON rewritten after each photo:
            results.append(result)  # a long run stopped early keeps its photos, and --resume goes on
            print(result["image"], result["lossless"], "falls", result.get("falls"), flush=True)
            Path(args.out).write_text(json.dumps({"report": report(results), "images": results}, indent=1,
                                                 default=float))
    results.sort(key=lambda r: r["image"])
    lines = report(results)
    Path(args.out).write_text(json.dumps({"report": lines, "images": results}, indent=1, default=float))
    print("\n".join(lines))

if __name__ == "__main__":
    main()
