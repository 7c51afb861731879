"""Rate control: the setting of a codec whose file is closest to a byte budget (`match_size`, for
any codec with a `search` range, `core.interface.Search`), and the learned codec's own, from its
smallest file to lossless (`match_learned`, what `--target-bytes` and `target_bytes=` run).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cycleapp.core import learned
from cycleapp.core.interface import Codec, CodecError, Search

TOLERANCE = 0.03  # a match is within +-3 % of the target bytes


def timed(fn, *args):
    """fn(*args) and the seconds it took (every encode is timed, so a chosen file is measured
    without encoding it again)."""
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


@dataclass
class Match:
    codec: str
    setting: float
    data: bytes
    target: int
    note: str  # empty when within tolerance
    variant: str = ""  # the learned codec's code size
    encode_s: float | None = None  # how long `data` took to encode (None: no file)
    metric: str = "bytes"  # what was matched: "bytes", or a quality ("psnr", "ms_ssim": `evaluation.matching`)
    value: float | None = None  # a quality match: the file's quality
    tolerance: float | None = None  # a quality match: how far from the target its value may be

    @property
    def encoded(self) -> tuple[bytes, float] | None:
        """The file and its encode time, for `measure` (None when the codec made no file)."""
        return (self.data, self.encode_s) if self.data and self.encode_s is not None else None

    @property
    def within_tolerance(self) -> bool:
        if self.metric != "bytes":
            return self.value is not None and abs(self.value - self.target) <= self.tolerance
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
        bisect(lo, hi, search.kind == "integer", size_at, tried, target, close, max_tries)


def bisect(lo, hi, integer: bool, value_at, tried: dict, target: float, close: float, max_tries: int) -> None:
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

    Beyond it, as far as that code size reaches with its steps finer (`learned.FINEST`), the same;
    then the largest code size with an enhancement layer (`learned.LayeredCodec`, its base that finest
    file), the layer's step matched to the target, down to lossless. Its files grow and its errors
    shrink as the step gets finer, so a larger target never gives a worse image. A target out of reach (below the
    smallest file, above the lossless one) gives the nearest file, and the match's note says so."""
    if target < 1:
        raise ValueError("the target size must be at least 1 byte")
    entries = learned.presets()  # smallest code first
    if not entries:
        raise ValueError("no checkpoints installed")
    made: dict[int, tuple[bytes, float]] = {}

    def natural(i: int) -> int:
        if i not in made:
            made[i] = timed(entries[i].encode, rgb, entries[i].default)
        return len(made[i][0])

    top = entries[-1]
    if target > (1 + TOLERANCE) * natural(len(entries) - 1):
        known = {top.default: made[len(entries) - 1], learned.FINEST: timed(top.encode, rgb, learned.FINEST)}
        finest = len(known[learned.FINEST][0])
        finer = Search(top.default, learned.FINEST, "integer")  # its steps finer, up to FINEST
        if target <= (1 + TOLERANCE) * finest:  # the largest code size reaches it
            return _named(match_size(top, rgb, target, known=known, search=finer), top.variant)
        m = _named(match_size(learned.layered().for_image(rgb), rgb, target), learned.LAYERED)
        if not m.within_tolerance and abs(finest - target) <= abs(len(m.data) - target):
            # between the largest code size's finest file and the layered codec's smallest (that file
            # and a layer of zeros): the nearer is the former, and just as good
            return _named(match_size(top, rgb, target, known=known, search=finer), top.variant)
        if m.setting == learned.LADDER and len(m.data) < target and not m.within_tolerance:
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
    """The match, with the learned codec's variant it came from (what `learned.by_name` takes)."""
    m.variant = variant
    return m
