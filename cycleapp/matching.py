"""Matching a codec to a byte budget: the setting whose file is closest to a target size; or to a
quality: the setting whose file decodes closest to a target PSNR or MS-SSIM (`match_quality`).

`compare` matches every other codec to the .cyc file's size (or quality) this way; any codec with a
`search` range (see `codecs.Search`) can be matched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import codecs as registry
from .codecs import Codec, CodecError, Search
from .measure import timed
from .metrics import ms_ssim, psnr

TOLERANCE = 0.03  # a match is within +-3 % of the target bytes
# A same-quality match: within 0.15 dB of PSNR, or 0.0015 of MS-SSIM: about what 3 % of the bytes
# changes at the sizes the code sizes make (0.1 to 1 bpp).
QUALITY_TOLERANCE = {"psnr": 0.15, "ms_ssim": 0.0015}
QUALITY_UNITS = {"psnr": ("{:.2f} dB PSNR", "{:.2f} dB"), "ms_ssim": ("MS-SSIM {:.4f}", "{:.4f}")}


@dataclass
class Match:
    codec: str
    setting: float
    data: bytes
    target: int
    note: str  # empty when within tolerance
    variant: str = ""  # the learned codec's code size
    encode_s: float | None = None  # how long `data` took to encode (None: no file)
    metric: str = "bytes"  # what was matched: "bytes", or a quality ("psnr", "ms_ssim") as `match_quality`'s
    value: float | None = None  # a quality match: the file's quality

    @property
    def encoded(self) -> tuple[bytes, float] | None:
        """The file and its encode time, for `measure` (None when the codec made no file)."""
        return (self.data, self.encode_s) if self.data and self.encode_s is not None else None

    @property
    def within_tolerance(self) -> bool:
        if self.metric != "bytes":
            return self.value is not None and abs(self.value - self.target) <= QUALITY_TOLERANCE[self.metric]
        return abs(len(self.data) - self.target) <= TOLERANCE * self.target


def match_size(codec: Codec, rgb: np.ndarray, target: int, max_tries: int = 24,
               known: dict | None = None, search: Search | None = None) -> Match:
    """The setting whose file size is closest to `target` bytes (bisection on the setting, or for a
    rate setting a correction by the size error). A codec that cannot encode the image (CodecError)
    gives a match without a file (or the closest file it made before failing), the reason in the note.

    Every encode is timed, so the chosen file can be measured without encoding it again; `known`
    holds files the caller already made, {setting: (bytes, seconds)}."""
    tried: dict[float, tuple[bytes, float]] = dict(known or {})

    def size_at(s: float) -> int:
        if s not in tried:
            tried[s] = timed(codec.encode, rgb, s)
        return len(tried[s][0])

    try:
        _search(search or codec.search, size_at, tried, rgb, target, max_tries)
        failure = ""
    except CodecError as e:
        failure = str(e)
    if not tried:
        return Match(codec.name, codec.default, b"", target, failure)
    best = min(tried, key=lambda s: (abs(len(tried[s][0]) - target), s))
    data, encode_s = tried[best]
    match = Match(codec.name, best, data, target, f"the search stopped early: {failure}" if failure else "",
                  encode_s=encode_s)
    if not match.within_tolerance and not failure:
        search = search or codec.search
        smallest = size_at(search.low)
        if smallest > target:
            match.note = f"cannot go below {smallest} bytes (target {target})"
        elif size_at(search.high) < target:
            match.note = f"largest file is {size_at(search.high)} bytes (target {target})"
        else:
            match.note = f"no setting within 3 % (closest {len(match.data)} bytes for target {target})"
    return match


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
            _bisect(np.log(search.low), np.log(search.high), False, lambda u: quality_at(float(np.exp(u))),
                    tried, target, close, max_tries)
        else:
            _bisect(search.low, search.high, search.kind == "integer", quality_at, tried, target, close, max_tries)
        failure = ""
    except CodecError as e:
        failure = str(e)
    if not quality:
        return Match(codec.name, codec.default, b"", target, failure, metric=metric)
    best = min(quality, key=lambda s: (abs(quality[s] - target), len(tried[s][0])))
    data, encode_s = tried[best]
    match = Match(codec.name, best, data, target, f"the search stopped early: {failure}" if failure else "",
                  encode_s=encode_s, metric=metric, value=quality[best])
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


def _search(search, size_at, tried: dict, rgb: np.ndarray, target: int, max_tries: int) -> None:
    """Try settings until one is close to the target (what was tried is in `tried`)."""
    lo, hi = search.low, search.high
    close = TOLERANCE / 3 * target  # stop searching a real-valued setting once this close
    if search.kind == "rate":
        # Start at the target itself, then correct by the size error.
        s = min(max(8 * target / (rgb.shape[0] * rgb.shape[1]), lo), hi)
        for _ in range(max_tries):
            error = size_at(s) / target
            if abs(error - 1) * target <= close:
                break
            s = min(max(s / error, lo), hi)
            if s in tried:
                break
    else:
        _bisect(lo, hi, search.kind == "integer", size_at, tried, target, close, max_tries)


def _bisect(lo, hi, integer: bool, value_at, tried: dict, target: float, close: float, max_tries: int) -> None:
    """Bisection on a setting whose value (file size, or quality) grows with it: stops once a
    real-valued setting is within `close` of the target, or at 1/1000 of the range (a real
    setting's file size can jump: JPEG XL's does); an integer setting's bracket ends are tried."""
    resolution = 1 if integer else (hi - lo) / 1000
    while len(tried) < max_tries and hi - lo > resolution:
        mid = (lo + hi) // 2 if integer else (lo + hi) / 2
        value = value_at(mid)
        if not integer and abs(value - target) <= close:
            break
        lo, hi = (mid, hi) if value <= target else (lo, mid)
    if integer:
        value_at(lo), value_at(hi)  # the bracket's ends are the candidates


def match_learned(rgb: np.ndarray, target: int) -> Match:
    """The learned codec at `target` bytes, from its smallest file to lossless.

    Up to the largest code size's own file: the code size whose own file is nearest the target (in
    ratio), then its step offset matched to the target (a code size is best near the rate it was
    trained for, so the offset stays small). Files grow with the code size, so a bisection finds
    the first size whose own file reaches the target (two or three encodes of five); the nearer of
    it and the size below is matched, starting from the file already made.

    Beyond it, as far as that code size reaches with its steps finer (`codecs.FINEST`), the same;
    then the largest code size with an enhancement layer (`codecs.LayeredCodec`, its base that finest
    file), the layer's step matched to the target, down to lossless. Its files grow and its errors
    shrink as the step gets finer, so a larger target never gives a worse image. A target out of reach (below the
    smallest file, above the lossless one) gives the nearest file, and the match's note says so."""
    if target < 1:
        raise ValueError("the target size must be at least 1 byte")
    entries = registry.presets()  # smallest code first
    if not entries:
        raise ValueError("no checkpoints installed")
    made: dict[int, tuple[bytes, float]] = {}

    def natural(i: int) -> int:
        if i not in made:
            made[i] = timed(entries[i].encode, rgb, entries[i].default)
        return len(made[i][0])

    top = entries[-1]
    if target > (1 + TOLERANCE) * natural(len(entries) - 1):
        known = {top.default: made[len(entries) - 1], registry.FINEST: timed(top.encode, rgb, registry.FINEST)}
        finest = len(known[registry.FINEST][0])
        finer = Search(top.default, registry.FINEST, "integer")  # its steps finer, up to FINEST
        if target <= (1 + TOLERANCE) * finest:  # the largest code size reaches it
            return _named(match_size(top, rgb, target, known=known, search=finer), top.variant)
        m = _named(match_size(registry.layered().for_image(rgb), rgb, target), registry.LAYERED)
        if not m.within_tolerance and abs(finest - target) <= abs(len(m.data) - target):
            # between the largest code size's finest file and the layered codec's smallest (that file
            # and a layer of zeros): the nearer is the former, and just as good
            return _named(match_size(top, rgb, target, known=known, search=finer), top.variant)
        if m.setting == registry.LADDER and len(m.data) < target and not m.within_tolerance:
            m.note = f"the lossless file is {len(m.data)} bytes, the largest this codec makes (target {target})"
        return m
    lo, hi = 0, len(entries) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if natural(mid) < target else (lo, mid)
    best = min((i for i in (lo - 1, lo) if i >= 0), key=lambda i: abs(np.log(natural(i) / target)))
    entry = entries[best]
    return _named(match_size(entry, rgb, target, known={entry.default: made[best]}), entry.variant)


def _named(m: Match, variant: str) -> Match:
    """The match, with the learned codec's variant it came from (what `codecs.learned` takes)."""
    m.variant = variant
    return m
