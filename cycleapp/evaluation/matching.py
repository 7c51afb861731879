"""Matching a codec to another file: to its size (`match_bytes`) or to its quality (`match_quality`,
the app's same-quality mode), in few encodes.

Both search the codec's setting as a root finder, not a blind bisection: the first encode is at the
setting where this codec's files are usually the size asked for (`PRIOR_BPP`, typical bpp at a few
settings), corrected by how costly this image is next to a typical photo (`difficulty`: one JPEG
encode, which on 6 training photos at 4 sizes cut the encodes of the searches by a quarter), then a
secant step through the points so far (the size grows about exponentially with a
quality setting, so the secant runs on log(bytes); the quality about linearly with the log of the
bytes). An integer setting stops at two neighbours that bracket the target, a real one once within
a third of the tolerance. Three or four encodes, where a bisection over 1 to 100 takes eight or nine;
a codec's encode of a 2K photo takes up to 2 s (HEIF), so this is most of the app's time.

The final choice and the reason for a miss are the core's (`core.rate.match_size`, given the files
made and the bracket found), so a size match is judged by one rule wherever it is made.
"""
from __future__ import annotations

import math

import numpy as np

from cycleapp.core.interface import Codec, CodecError, Search
from cycleapp.core.rate import TOLERANCE, Match, match_size, timed
from cycleapp.evaluation import registry
from cycleapp.evaluation.metrics import Original

# A same-quality match: within 0.15 dB of PSNR, or 0.0015 of MS-SSIM: about what 3 % of the bytes
# changes at the sizes the code sizes make (0.1 to 1 bpp).
QUALITY_TOLERANCE = {"psnr": 0.15, "ms_ssim": 0.0015}
QUALITY_UNITS = {"psnr": ("{:.2f} dB PSNR", "{:.2f} dB"), "ms_ssim": ("MS-SSIM {:.4f}", "{:.4f}")}

# Where each codec's files usually are: (setting, bpp), the geometric mean over six training photos
# (`python tests/bench_app.py --prior` measures it again). Only the first guess of a search: a photo
# far from these costs an encode or two more, never a worse match. JPEG 2000's setting is its bpp.
PRIOR_BPP = {
    "jpeg": ((2, 0.095), (5, 0.161), (10, 0.294), (20, 0.507), (30, 0.68), (40, 0.821), (50, 0.953),
             (60, 1.095), (70, 1.31), (80, 1.652), (90, 2.431)),
    "webp": ((0, 0.124), (5, 0.253), (10, 0.313), (20, 0.421), (30, 0.531), (40, 0.638), (50, 0.737),
             (60, 0.838), (70, 0.949), (80, 1.243), (90, 2.037)),
    "heif": ((1, 0.053), (5, 0.07), (10, 0.096), (20, 0.201), (30, 0.392), (40, 0.715), (50, 1.207),
             (60, 1.928), (70, 2.938), (80, 4.231)),
    "avif": ((1, 0.082), (5, 0.09), (10, 0.122), (20, 0.183), (30, 0.272), (40, 0.411), (50, 0.627),
             (60, 0.909), (70, 1.264), (80, 1.68), (90, 2.403)),
    "jxl": ((0, 0.165), (5, 0.209), (10, 0.261), (20, 0.338), (30, 0.448), (40, 0.506), (50, 0.586),
            (60, 0.706), (70, 0.904), (80, 1.238), (90, 1.969)),
}
# How quality grows with the file (per e-fold of bytes), for the second guess of a quality search:
# about 1 dB of PSNR per +25 % bytes at these sizes; MS-SSIM on the scale -log(1 - MS-SSIM).
QUALITY_SLOPE = {"psnr": 4.5, "ms_ssim": 0.7}
MAX_TRIES = 12


def _axis(codec: Codec) -> tuple[float, float, bool, callable]:
    """The searched variable of a codec's setting: (low, high, integer, to setting). A rate setting
    (bpp) is searched on its logarithm, as files and qualities follow that."""
    s = codec.search
    if s.kind == "rate":
        return math.log(s.low), math.log(s.high), False, math.exp
    return s.low, s.high, s.kind == "integer", (int if s.kind == "integer" else float)


def prior(codec: Codec, bpp: float) -> tuple[float, float]:
    """(x, slope): where on the search axis this codec's files are usually `bpp`, and how fast the
    log of the bytes grows there per unit of the axis (`PRIOR_BPP`; a rate setting: itself, slope 1)."""
    low, high, _, _ = _axis(codec)
    if codec.search.kind == "rate":
        return min(max(math.log(bpp), low), high), 1.0
    if codec.name not in PRIOR_BPP:
        return (low + high) / 2, 4 / (high - low)  # no prior: the middle, e^4 in bytes over the range
    xs, logs = zip(*((s, math.log(b)) for s, b in PRIOR_BPP[codec.name]))
    x = float(np.interp(math.log(bpp), logs, xs))
    i = min(max(int(np.searchsorted(xs, x)), 1), len(xs) - 1)
    return min(max(x, low), high), (logs[i] - logs[i - 1]) / (xs[i] - xs[i - 1])


def secant(low: float, high: float, integer: bool, value_at, target: float, close: float, start: float,
           slope: float, max_tries: int = MAX_TRIES) -> dict:
    """Find where an increasing `value_at(x)` meets `target` on [low, high]: first at `start`, then
    secant steps (through the bracket once the target is bracketed; before that through the two
    nearest points, or `slope` after the first). Stops within `close`, at two neighbouring integers
    (or 1/1000 of the range) around the target, at an end of the range that does not reach it, or
    after `max_tries` values. Returns {x: value} of what was tried."""
    seen: dict = {}
    resolution = 1 if integer else (high - low) / 1000

    def at(x: float):
        x = min(max(x, low), high)
        x = int(round(x)) if integer else float(x)
        if x not in seen:
            seen[x] = value_at(x)
        return x

    x, kept, last_side = at(start), 0, None
    while len(seen) < max_tries and abs(seen[x] - target) > close:
        below = [s for s in seen if seen[s] <= target]
        above = [s for s in seen if seen[s] > target]
        a, b = max(below, default=None), min(above, default=None)
        if (a is None and low in seen) or (b is None and high in seen):
            break  # the range's end does not reach the target
        if a is not None and b is not None:
            if b - a <= resolution:
                break
            # the secant, or the middle after two steps that moved the same end of the bracket (a
            # curved value makes a secant crawl from one side); never at the bracket's very ends
            kept = kept + 1 if (seen[x] <= target) == last_side else 0
            t = a + (target - seen[a]) * (b - a) / (seen[b] - seen[a]) if kept < 1 else (a + b) / 2
            t = min(max(t, a + 0.15 * (b - a)), b - 0.15 * (b - a))
            if integer:
                t = min(max(round(t), a + 1), b - 1)
        else:  # one side only: from the nearest point, by the local slope (or `slope` at first)
            near = a if b is None else b
            side = sorted(below if b is None else above, key=lambda s: abs(seen[s] - target))
            local = (seen[side[0]] - seen[side[1]]) / (side[0] - side[1]) if len(side) > 1 else 0
            step = (target - seen[near]) / (local if local > 0 else slope)
            step = math.copysign(min(abs(step), (high - low) / 4), step)  # at most a quarter of the range
            t = near + 1.1 * step  # a little past the target, so that the next value brackets it
            if integer:
                t = math.ceil(t) if t > near else math.floor(t)
        t = min(max(t, low), high)
        if (int(round(t)) if integer else float(t)) in seen:
            break
        last_side = seen[x] <= target
        x = at(t)
    return seen


def difficulty(rgb: np.ndarray, bpp: float, made: dict | None = None) -> float:
    """How many times the bytes of a typical photo (`PRIOR_BPP`) this image's files take at the same
    setting, near `bpp`: one JPEG encode (a few hundredths of a second for a 2K photo) at JPEG's
    usual setting for `bpp`. Files of different codecs follow an image's detail alike, so this
    corrects every codec's first guess (`match_bytes`, `match_quality`): on a detailed photo a
    search then starts near the setting it needs rather than a few qualities below it.

    made: where to put that JPEG file ({setting: (bytes, seconds)}), for a JPEG search to take as
    one of its own (`known`) rather than encode it again."""
    jpeg = registry.get("jpeg")
    setting = int(round(prior(jpeg, bpp)[0]))
    setting = min(max(setting, PRIOR_BPP["jpeg"][0][0]), PRIOR_BPP["jpeg"][-1][0])
    try:
        data, seconds = timed(jpeg.encode, rgb, setting)
    except CodecError:  # an image JPEG cannot write: no correction
        return 1.0
    if made is not None:
        made[setting] = (data, seconds)
    actual = 8 * len(data) / (rgb.shape[0] * rgb.shape[1])
    xs, logs = zip(*((s, math.log(b)) for s, b in PRIOR_BPP["jpeg"]))
    return actual / math.exp(float(np.interp(setting, xs, logs)))


def match_bytes(codec: Codec, rgb: np.ndarray, target: int, max_tries: int = MAX_TRIES,
                hard: float = 1.0, known: dict | None = None) -> Match:
    """`core.rate.match_size` (the same rule, tolerance and notes), found in fewer encodes: the secant
    search on log(bytes) from the codec's usual setting for this size (for an image `hard` times as
    costly as a typical photo: `difficulty`), then the core's choice among the files made, within
    the bracket found. A rate setting keeps the core's own search (which corrects the bitrate by the
    size error: two encodes). `known`: files of this codec already made, {setting: (bytes, seconds)}."""
    if codec.search is None or codec.search.kind == "rate":
        return match_size(codec, rgb, target, known=known)
    low, high, integer, setting = _axis(codec)
    tried: dict = dict(known or {})

    def log_size(x):
        s = setting(x)
        if s not in tried:
            tried[s] = timed(codec.encode, rgb, s)
        return math.log(max(len(tried[s][0]), 1))

    start, slope = prior(codec, 8 * target / (rgb.shape[0] * rgb.shape[1]) / hard)
    close = math.log(1 + TOLERANCE / 3)
    try:
        seen = secant(low, high, integer, log_size, math.log(target), close, start, slope, max_tries)
    except CodecError:  # the core meets the same refusal and says it as it always does
        return match_size(codec, rgb, target, known=tried)
    a = max((x for x in seen if seen[x] <= math.log(target)), default=None)
    b = min((x for x in seen if seen[x] > math.log(target)), default=None)
    if a is None or b is None:
        nearest = min(seen, key=lambda x: abs(seen[x] - math.log(target)))
        if abs(seen[nearest] - math.log(target)) <= close:  # found, from one side: no range end to encode
            a = b = nearest
    a, b = low if a is None else a, high if b is None else b  # else the core tries the end (for its note)
    return match_size(codec, rgb, target, max_tries=len(tried), known=tried,
                      search=Search(setting(a), setting(b), codec.search.kind))


def match_quality(codec: Codec, rgb: np.ndarray, metric: str, target: float, max_tries: int = MAX_TRIES,
                  near_bpp: float | None = None, hard: float = 1.0, known: dict | None = None,
                  original: Original | None = None) -> Match:
    """The setting whose file decodes closest to `target` on `metric` ("psnr" or "ms_ssim"): the
    secant search with each file decoded and measured, first at the codec's usual setting for
    `near_bpp` (the reference file's bpp: at the same quality codecs differ by less than 2x in
    bytes; None: the middle of the range). A miss of QUALITY_TOLERANCE, or a codec that cannot
    encode the image, is said in the note as for sizes. `known`: files of this codec already made,
    {setting: (bytes, seconds)}, decoded and measured only if the search comes to their setting.
    `original`: `rgb`'s statistics for the metrics, when the caller shares them with other searches."""
    original = original if original is not None else Original(rgb)
    score = {"psnr": original.psnr, "ms_ssim": original.ms_ssim}[metric]
    # the searched scale: PSNR itself; MS-SSIM as -log(1 - MS-SSIM), which grows about linearly too
    scale = (lambda q: q) if metric == "psnr" else (lambda q: -math.log(max(1 - q, 1e-9)))
    tried: dict[float, tuple[bytes, float]] = dict(known or {})
    quality: dict[float, float] = {}
    low, high, integer, setting = _axis(codec)
    rank = lambda s: (abs(quality[s] - target), len(tried[s][0]))  # the best file: the least of these
    kept: dict[float, tuple[np.ndarray, float]] = {}  # the best file so far: its pixels, its decode time

    def quality_at(s: float) -> float:
        if s not in quality:
            if s not in tried:
                tried[s] = timed(codec.encode, rgb, s)
            decoded = timed(codec.decode, tried[s][0])
            quality[s] = score(decoded[0])
            if not kept or rank(s) < rank(next(iter(kept))):
                kept.clear()
                kept[s] = decoded
        return quality[s]

    if near_bpp:
        start, slope = prior(codec, near_bpp / hard)
    else:
        start, slope = (low + high) / 2, 4 / (high - low)
    slope *= QUALITY_SLOPE[metric]
    close = scale(target + QUALITY_TOLERANCE[metric] / 3) - scale(target)
    try:
        secant(low, high, integer, lambda x: scale(quality_at(setting(x))), scale(target), close, start,
                      slope, max_tries)
        failure = ""
    except CodecError as e:
        failure = str(e)
    if not quality:
        return Match(codec.name, codec.default, b"", target, failure, metric=metric,
                     tolerance=QUALITY_TOLERANCE[metric])
    best = min(quality, key=rank)
    data, encode_s = tried[best]
    pixels, decode_s = kept.get(best, (None, None))
    match = Match(codec.name, best, data, target, f"the search stopped early: {failure}" if failure else "",
                  encode_s=encode_s, metric=metric, value=quality[best], tolerance=QUALITY_TOLERANCE[metric],
                  pixels=pixels, decode_s=decode_s)
    if not match.within_tolerance and not failure:
        text, short = QUALITY_UNITS[metric]
        bracketed = any(q <= target for q in quality.values()) and any(q > target for q in quality.values())
        if not bracketed and quality_at(setting(low)) > target:
            match.note = f"cannot go below {text.format(quality_at(setting(low)))} (target {short.format(target)})"
        elif not bracketed and quality_at(setting(high)) < target:
            match.note = f"best is {text.format(quality_at(setting(high)))} (target {short.format(target)})"
        else:
            match.note = (f"no setting within {QUALITY_TOLERANCE[metric]:g} (closest {text.format(match.value)} "
                          f"for target {short.format(target)})")
    return match
