"""Matching a codec to a quality: the setting whose file decodes closest to a target PSNR or MS-SSIM
(`match_quality`), what the app's same-quality mode runs; matching to a byte budget is the codec's
rate control (`core.rate.match_size`), with the same bisection.
"""
from __future__ import annotations

import numpy as np

from cycleapp.core.interface import Codec, CodecError
from cycleapp.core.rate import Match, bisect, timed
from cycleapp.evaluation.metrics import ms_ssim, psnr

# A same-quality match: within 0.15 dB of PSNR, or 0.0015 of MS-SSIM: about what 3 % of the bytes
# changes at the sizes the code sizes make (0.1 to 1 bpp).
QUALITY_TOLERANCE = {"psnr": 0.15, "ms_ssim": 0.0015}
QUALITY_UNITS = {"psnr": ("{:.2f} dB PSNR", "{:.2f} dB"), "ms_ssim": ("MS-SSIM {:.4f}", "{:.4f}")}


def match_quality(codec: Codec, rgb: np.ndarray, metric: str, target: float, max_tries: int = 16) -> Match:
    """The setting whose file decodes closest to `target` on `metric` ("psnr" or "ms_ssim"): the
    bisection of `match_size` on the setting, with each file decoded and measured (a rate setting
    is bisected on its logarithm: quality grows about linearly with the log of the rate). A miss of
    QUALITY_TOLERANCE, or a codec that cannot encode the image, is said in the note as for sizes."""
    score = {"psnr": psnr, "ms_ssim": ms_ssim}[metric]
    tried: dict[float, tuple[bytes, float]] = {}
    quality: dict[float, float] = {}

    def quality_at(s: float) -> float:
        if s not in tried:
            tried[s] = timed(codec.encode, rgb, s)
            quality[s] = score(rgb, codec.decode(tried[s][0]))
        return quality[s]

    search, close = codec.search, QUALITY_TOLERANCE[metric] / 3
    try:
        if search.kind == "rate":
            bisect(np.log(search.low), np.log(search.high), False, lambda u: quality_at(float(np.exp(u))),
                    tried, target, close, max_tries)
        else:
            bisect(search.low, search.high, search.kind == "integer", quality_at, tried, target, close, max_tries)
        failure = ""
    except CodecError as e:
        failure = str(e)
    if not quality:
        return Match(codec.name, codec.default, b"", target, failure, metric=metric,
                     tolerance=QUALITY_TOLERANCE[metric])
    best = min(quality, key=lambda s: (abs(quality[s] - target), len(tried[s][0])))
    data, encode_s = tried[best]
    match = Match(codec.name, best, data, target, f"the search stopped early: {failure}" if failure else "",
                  encode_s=encode_s, metric=metric, value=quality[best],
                  tolerance=QUALITY_TOLERANCE[metric])
    if not match.within_tolerance and not failure:
        text, short = QUALITY_UNITS[metric]
        if quality_at(search.low) > target:
            match.note = f"cannot go below {text.format(quality_at(search.low))} (target {short.format(target)})"
        elif quality_at(search.high) < target:
            match.note = f"best is {text.format(quality_at(search.high))} (target {short.format(target)})"
        else:
            match.note = (f"no setting within {QUALITY_TOLERANCE[metric]:g} (closest {text.format(match.value)} "
                          f"for target {short.format(target)})")
    return match
