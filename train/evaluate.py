"""Rate-distortion evaluation on a folder of images, with real files for every codec.

    python -m train.evaluate --images ../shared/data/kodak --out results.json --plot rd.png

One curve per codec of the registry (`cycleapp.evaluation.registry`): for the learned codec one point per
shipped code size, for a classical codec one point per setting of its sweep over the same bpp
range; each point is the mean over images of bpp (8 x file bytes / pixels), PSNR, MS-SSIM, encode
seconds and decode seconds, all from `cycleapp.evaluation.measure` (what the app and the CLI report too).
Prints the Bjontegaard delta rate of the learned codec against each other codec, and the speed.

Two BD-rates, because they answer different questions. That of the mean curves weighs how each
codec spreads its bits over the images: JPEG 2000's sweep (by target bpp) gives every image the same
bpp, a code size gives each image what its content costs at one trade-off, so on a set whose images
differ much in how hard they are, the mean curves compare two allocations as much as two codecs. The
per-image BD-rate compares the two codecs on each image (what the app shows: one photo, the same
file size) and is summarised by its mean and median over the images.

`--matched CODECS` also measures mean curves with one allocation for all: at each code size, each
named codec matched image by image to the size of the learned codec's file (`compare`, what the app
does), so at every point every codec has (within the match's 3 %, misses counted) the learned
codec's file size on every image, and the mean curves compare the codecs under that one allocation
(the learned codec's, not a neutral one).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cycleapp.core import learned
from cycleapp.core.allocator import reuse_freed_memory
from cycleapp.evaluation import registry
from cycleapp.core.learned import CycleCodec
from cycleapp.evaluation.compare import LIMIT_NOTE, MAX_PIXELS as COMPARE_MAX_PIXELS, compare
from cycleapp.imageio import load_rgb, size_problem
from cycleapp.core.rate import match_learned
from cycleapp.evaluation.measure import measure
from cycleapp.evaluation.plots import rd_figure
from train.data import image_files, kodak_dir
from train.errors import TrainError, command

METRICS = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")
PER_IMAGE = ("bpp", "psnr", "ms_ssim")  # kept for every image, for the per-image BD-rate


def measure_checkpoint(ckpt, directory: Path, limit: int | None = None) -> dict:
    """Mean real-file bpp and PSNR of one checkpoint over a folder (decoded from the bytes)."""
    files = image_files(directory)[:limit]
    points = [measure(CycleCodec(ckpt), load_rgb(path)).values(("bpp", "psnr")) for path in files]
    return {k: float(np.mean([p[k] for p in points])) for k in ("bpp", "psnr")} | {"images": len(files)}


def operating_points(names: list[str], rdoq_weight: float) -> dict[str, list[tuple]]:
    """Per codec name, its (entry, setting) points: every entry of the name over its sweep (the
    learned codec: its code sizes, the range these results report; `train.highrate` measures the
    layered codec above them)."""
    return {name: [(entry, s) for entry in learned_or_family(name, rdoq_weight) for s in entry.settings]
            for name in names}


def learned_or_family(name: str, rdoq_weight: float = learned.DEFAULT_RDOQ_WEIGHT) -> list:
    """The learned codec's code sizes, or every entry of a classical codec."""
    return learned.presets(rdoq_weight) if name == learned.LEARNED else registry.family(name, rdoq_weight)


def evaluate(files: list[Path], names: list[str], rdoq_weight: float = learned.DEFAULT_RDOQ_WEIGHT) -> dict:
    points = operating_points(names, rdoq_weight)
    # values[name][point][image][metric]
    values: dict[str, list[list[dict]]] = {n: [[] for _ in p] for n, p in points.items()}
    for path in tqdm(files if points else [], desc="images"):  # no codec to run: read no image
        rgb = load_rgb(path)
        for name, ops in points.items():
            for i, (entry, setting) in enumerate(ops):
                values[name][i].append(_numbers(measure(entry, rgb, setting)))
    codecs = {name: mean_curve(values[name], [entry.describe(s) for entry, s in ops]) for name, ops in points.items()}
    return {"images": len(files), "files": [p.name for p in files], "codecs": codecs}


def mean_curve(values: list[list[dict]], settings: list[str]) -> dict:
    """One codec's curve from its measurements values[point][image][metric]: the mean over the
    images at each point, points in increasing mean bpp, and each image's own points (PER_IMAGE)."""
    order = sorted(range(len(values)), key=lambda i: np.mean([v["bpp"] for v in values[i]]))
    out = {k: [float(np.mean([v[k] for v in values[i]])) for i in order] for k in METRICS}
    out["setting"] = [settings[i] for i in order]
    out["per_image"] = {k: [[values[i][j][k] for i in order] for j in range(len(values[0]))] for k in PER_IMAGE}
    return out


def _numbers(m) -> dict:
    """A measurement's METRICS, NaN where one did not apply (a codec that made no file)."""
    values = m.values(METRICS)
    return {k: float("nan") if values[k] is None else values[k] for k in METRICS}


def matched(files: list[Path], names: list[str], rdoq_weight: float = learned.DEFAULT_RDOQ_WEIGHT) -> dict:
    """Curves with one allocation for every codec: at each code size, the learned codec's file of
    each image, and each named codec matched to that file's size (`compare`, as the app does). At a
    point every codec then has the learned codec's file size on every image (within the match's
    tolerance; "missed" counts the matches outside it, a codec that cannot go that small, say), so
    the mean curves compare the codecs, not how each spreads its bits over the images."""
    sizes = learned.presets(rdoq_weight)
    values = {name: [[] for _ in sizes] for name in [learned.LEARNED, *names]}
    missed = dict.fromkeys(values, 0)
    for path in tqdm(files, desc="matched"):
        rgb = load_rgb(path)
        for i, entry in enumerate(sizes):
            for m in compare(rgb, entry, names):
                values[m.codec][i].append(_numbers(m))
                missed[m.codec] += bool(m.note)  # outside the tolerance, or no file at all
    settings = [f"at {entry.variant}" for entry in sizes]
    return {name: mean_curve(v, settings) | {"missed": missed[name]} for name, v in values.items()}


def earlier_curves(earlier: Path, files: list[Path]) -> dict:
    """The curves of an earlier evaluation of the same images, to reuse for the codecs not run now.

    The classical encoders are deterministic, so their curves only change when their settings do;
    re-measuring them for every new checkpoint costs most of an evaluation's time."""
    not_an_evaluation = TrainError(f"{earlier} is not the JSON of an earlier evaluation")
    try:
        old = json.loads(Path(earlier).read_text())
        curves, images = old["codecs"], old["images"]
        if not isinstance(images, int):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise not_an_evaluation from None
    if images != len(files):  # before the curves, whose per-image points would not match either
        raise TrainError(f"{earlier} has {images} images, this evaluation {len(files)}")
    if "files" in old and old["files"] != [p.name for p in files]:
        raise TrainError(f"{earlier} is an evaluation of other images than these")
    try:
        if not (isinstance(curves, dict) and all(_is_curve(c, len(files)) for c in curves.values())):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise not_an_evaluation from None
    return curves


def _is_curve(curve: dict, images: int) -> bool:
    """Whether a curve read back from a JSON has what the report reads: PER_IMAGE's metrics as
    numbers (NaN where a metric did not apply), one per point, and each image's points if it keeps them."""
    def numbers(values, n: int) -> bool:
        return isinstance(values, list) and len(values) == n and \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    points = len(curve["bpp"])
    if not all(numbers(curve[k], points) for k in PER_IMAGE):
        return False
    each = curve.get("per_image")
    return each is None or all(isinstance(each[k], list) and len(each[k]) == images
                               and all(numbers(v, points) for v in each[k]) for k in PER_IMAGE)


def rate_control(files: list[Path]) -> dict:
    """Points of the learned codec between its code sizes: for each pair of neighbouring sizes, the
    geometric mean of their file sizes as the target (per image), and how far the point lands from
    the straight line joining the two sizes' points (PSNR over log-rate; positive = above it)."""
    sizes = learned.presets()
    gaps, misses = [], []
    for path in files:
        rgb = load_rgb(path)
        pixels = rgb.shape[0] * rgb.shape[1]
        ends = [measure(e, rgb).values(("bpp", "psnr")) for e in sizes]
        for a, b in zip(ends, ends[1:]):
            target = int(round(np.sqrt(a["bpp"] * b["bpp"]) * pixels / 8))
            m = match_learned(rgb, target)
            point = measure(learned.by_name(m.variant), rgb, m.setting, encoded=m.encoded).values(("bpp", "psnr"))
            t = (np.log(point["bpp"]) - np.log(a["bpp"])) / (np.log(b["bpp"]) - np.log(a["bpp"]))
            gaps.append(point["psnr"] - (a["psnr"] + t * (b["psnr"] - a["psnr"])))
            misses.append(abs(len(m.data) / target - 1))
    return {"points": len(gaps), "above_line_db_mean": float(np.mean(gaps)), "above_line_db_min": float(np.min(gaps)),
            "size_error_max": float(np.max(misses))}


def bd_rate(anchor: dict, test: dict, metric: str = "psnr") -> float | None:
    """Bjontegaard delta rate (%) of `test` against `anchor`: cubic fit of log-rate over quality,
    integrated over the overlapping quality range. Negative = fewer bits for the same quality."""
    def quality(curve):
        q = np.asarray(curve[metric], dtype=float)
        return -10 * np.log10(1 - q) if metric == "ms_ssim" else q  # MS-SSIM in dB

    qa, qt = quality(anchor), quality(test)
    ra, rt = np.log(anchor["bpp"]), np.log(test["bpp"])
    ok_a, ok_t = np.isfinite(qa), np.isfinite(qt)
    if ok_a.sum() < 4 or ok_t.sum() < 4:
        return None
    qa, ra, qt, rt = qa[ok_a], ra[ok_a], qt[ok_t], rt[ok_t]
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if lo >= hi:
        return None
    pa, pt = np.polyfit(qa, ra, 3), np.polyfit(qt, rt, 3)
    ia, it = np.polyint(pa), np.polyint(pt)
    diff = ((np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))) / (hi - lo)
    return float((np.exp(diff) - 1) * 100)


def per_image_bd_rates(anchor: dict, test: dict, metric: str = "psnr") -> list[float] | None:
    """Each image's BD-rate of `test` against `anchor` (the images whose curves overlap), or None if
    either curve does not carry its images' points (an evaluation written before they were kept)."""
    if "per_image" not in anchor or "per_image" not in test:
        return None
    a, t = anchor["per_image"], test["per_image"]
    rates = [bd_rate({"bpp": ab, metric: aq}, {"bpp": tb, metric: tq}, metric)
             for ab, aq, tb, tq in zip(a["bpp"], a[metric], t["bpp"], t[metric])]
    return [r for r in rates if r is not None]


def report(results: dict) -> str:
    codecs = results["codecs"]
    lines = []
    fmt = lambda v: "n/a (curves do not overlap)" if v is None else f"{v:+.1f} %"
    if learned.LEARNED in codecs:
        cyc = codecs[learned.LEARNED]
        lines.append("cycle model per code size (mean over %d images):" % results["images"])
        for i, name in enumerate(cyc["setting"]):
            lines.append(f"  {name:8s} {cyc['bpp'][i]:.3f} bpp  {cyc['psnr'][i]:.2f} dB  MS-SSIM "
                         f"{cyc['ms_ssim'][i]:.4f}  encode {cyc['encode_s'][i]:.3f} s  decode {cyc['decode_s'][i]:.3f} s")
        seconds = np.mean(np.add(cyc["encode_s"], cyc["decode_s"]))
        lines.append(f"  speed: {100 * seconds:.1f} s per hundred images (encode + decode, mean over code sizes)")
        lines.append("BD-rate of the cycle model (negative = fewer bytes for the same quality), of the mean "
                     "curves; per image: mean and median over the images whose curves overlap:")
        for name, curve in codecs.items():
            if name == learned.LEARNED:
                continue
            lines.append(f"  vs {name:9s} PSNR {fmt(bd_rate(curve, cyc, 'psnr'))}   "
                         f"MS-SSIM {fmt(bd_rate(curve, cyc, 'ms_ssim'))}")
            for metric, label in (("psnr", "PSNR"), ("ms_ssim", "MS-SSIM")):
                if rates := per_image_bd_rates(curve, cyc, metric):
                    lines.append(f"     per image {label:7s} mean {np.mean(rates):+.1f} %, median "
                                 f"{np.median(rates):+.1f} % ({len(rates)} images)")
    if "matched" in results:
        curves = results["matched"]
        lines.append(f"at matched sizes (each codec matched, image by image, to the size of each code size's file; "
                     f"{results['images']} images), BD-rate of the cycle model's mean curve (negative = fewer "
                     f"bytes for the same quality); per image: mean and median:")
        for name, c in curves.items():
            if name == learned.LEARNED:
                continue
            missed = f"   ({c['missed']} matches outside 3 %)" if c.get("missed") else ""
            for metric, label in (("psnr", "PSNR"), ("ms_ssim", "MS-SSIM")):
                rates = per_image_bd_rates(c, curves[learned.LEARNED], metric)
                each = f"mean {np.mean(rates):+.1f} %, median {np.median(rates):+.1f} %" if rates else "n/a"
                lines.append(f"  vs {name:9s} {label:7s} {fmt(bd_rate(c, curves[learned.LEARNED], metric))}   "
                             f"per image {each}{missed if metric == 'psnr' else ''}")
    if "rate_control" in results:
        r = results["rate_control"]
        lines.append(f"rate control, {r['points']} points half-way (in bytes) between neighbouring code sizes: "
                     f"{r['above_line_db_mean']:+.3f} dB above the line joining them on average "
                     f"(least {r['above_line_db_min']:+.3f} dB), size within {100 * r['size_error_max']:.1f} % of the target")
    return "\n".join(lines)


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=kodak_dir())
    p.add_argument("--out", type=Path, default=Path("results.json"))
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--codecs", default=",".join(registry.names()),
                   help=f"comma-separated, from {','.join(registry.names())} (default: all)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--rdoq-weight", type=float, default=learned.DEFAULT_RDOQ_WEIGHT,
                   help="the cycle encoder's rate-distortion rounding weight (inf: plain rounding)")
    p.add_argument("--reuse", type=Path, action="append", default=[],
                   help="an earlier evaluation's JSON of the same images: its curves for the codecs not run "
                        "now (repeatable; the first file that has a codec gives its curve)")
    p.add_argument("--matched", default="",
                   help="comma-separated codecs to measure again matched, image by image, to each code size's "
                        "file (mean curves with the same allocation for every codec)")
    p.add_argument("--rate-control", action="store_true",
                   help="also measure the learned codec's points between its code sizes (--target-bytes)")
    args = p.parse_args(argv)
    reuse_freed_memory()  # as the command line and the app do
    if args.images is None or not Path(args.images).is_dir():
        raise TrainError("--images must be a folder of images (../shared/data/kodak is not here)")
    if not args.rdoq_weight >= 0:  # also refuses nan
        raise TrainError("--rdoq-weight must be a number >= 0 (inf: plain rounding)")
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    to_match = list(dict.fromkeys(n.strip() for n in args.matched.split(",") if n.strip()))
    for option, requested, allowed in (("", names, registry.names()), ("--matched: ", to_match, registry.matchable())):
        try:
            registry.check(requested, allowed)
        except ValueError as e:
            raise TrainError(f"{option}{e}") from None
    files = image_files(args.images)[: args.limit]
    if not files:
        raise TrainError(f"no images in {args.images}")
    for path in files if to_match else []:  # compare's own limit: refused now, not after the sweep
        try:
            with Image.open(path) as img:
                problem = size_problem(*img.size, COMPARE_MAX_PIXELS, limit_note=LIMIT_NOTE)
        except OSError:
            problem = None  # not an image: load_rgb says so, as without --matched
        if problem:
            raise TrainError(f"--matched: {path.name}: {problem}")
    for path in (args.out, args.plot):
        if path:
            try:  # fail now, not after the whole evaluation
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                raise TrainError(f"cannot write {path} (cannot create the folder {path.parent})") from None
    reused = [earlier_curves(path, files) for path in args.reuse]
    results = evaluate(files, names, args.rdoq_weight)
    for curves in reused:
        for name, curve in curves.items():
            results["codecs"].setdefault(name, curve)
    if to_match:
        results["matched"] = matched(files, to_match, args.rdoq_weight)
    if args.rate_control:
        results["rate_control"] = rate_control(files)
    results["report"] = report(results).splitlines()
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(report(results))
    if args.plot:
        rd_figure(results["codecs"], title=f"{args.images.name}, {len(files)} images").savefig(args.plot)
        print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
