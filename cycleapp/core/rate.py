"""Rate control: the setting of a codec whose file is closest to a byte budget (`match_size`, for
any codec with a `search` range, `core.interface.Search`), and the learned codec's own, from its
smallest file to lossless (`match_learned`, what `--target-bytes` and `target_bytes=` run).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cycleapp.core import codec, learned
from cycleapp.core.bitstream import MAX_LAYER_PIXELS_OF_KIND
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
    finer = Search(top.default, learned.FINEST, "integer")  # its steps finer, up to FINEST
    finest: dict[int, tuple[bytes, float]] = {}  # that code size's file at FINEST, made once

    def finest_file() -> dict[int, tuple[bytes, float]]:
        if not finest:
            finest[learned.FINEST] = timed(top.encode, rgb, learned.FINEST)
        return finest
    layered = None
    if 8 * target >= LAYERED_FIRST_BPP * rgb.shape[0] * rgb.shape[1] and isinstance(top, learned.CycleCodec):
        # Most likely beyond the largest code size: make the layered codec's base first (its code is
        # that code size's FINEST file's), and make none of its own files unless the target is within them.
        layered = learned.layered().for_image(rgb)
        if target <= (1 + TOLERANCE) * (1 + 1e-3) * layered.base_bytes():  # (the FINEST file: about as large)
            layered = None
    if layered is None and target > (1 + TOLERANCE) * natural(len(entries) - 1):
        known = {top.default: made[len(entries) - 1], **finest_file()}
        if target <= (1 + TOLERANCE) * len(known[learned.FINEST][0]):  # the largest code size reaches it
            return _named(match_size(top, rgb, target, known=known, search=finer), top.variant)
        layered = learned.layered().for_image(rgb)
    if layered is not None:
        m = _named(match_layered(layered, rgb, target), learned.LAYERED)
        if not m.within_tolerance and abs(layered.base_bytes() - target) <= abs(len(m.data) - target):
            # between the largest code size's finest file and the layered codec's smallest (that file
            # and a layer of zeros): the nearer is the former, and just as good
            known = dict(finest_file())
            if abs(len(known[learned.FINEST][0]) - target) <= abs(len(m.data) - target):
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


LAYERED_FIRST_BPP = 1.0  # targets from here up start with the layered codec's base (a guess: speed only)


def match_layered(layered, rgb: np.ndarray, target: int) -> Match:
    """The layered codec's setting (its base made, `LayeredCodec.for_image`) whose file is closest to
    `target`, as `match_size` finds it, in few encodes: the search runs on the estimated sizes of
    the transform-domain settings (`LayeredCodec.estimate`, no layer coded), a secant on the log of
    the size (it is about linear in the setting: in the log of the step), bracketed; then only the
    settings either side of the target are coded, the nearer first (the estimate is within about
    0.1 %, a setting apart is about 4 %)."""
    made: dict[int, tuple[bytes, float]] = {}
    estimates: dict[int, float] = {}

    def size(s: int) -> int:
        if s not in made:
            made[s] = timed(layered.encode, rgb, s)
        return len(made[s][0])

    def estimate(s: int) -> float:
        if s not in estimates:
            estimates[s] = layered.estimate(s)
        return estimates[s]

    top = len(learned.TRANSFORM_STEPS) - 1
    lo, hi = 0, top  # the bracket: estimate(lo) <= target < estimate(hi), its ends assumed until tried
    if target <= layered.base_bytes():
        hi = 0
    bpp = 8 * target / (rgb.shape[0] * rgb.shape[1])
    s, slope = LAYERED_START + int(round(np.log(bpp / LAYERED_START_BPP) / LAYERED_SLOPE)), LAYERED_SLOPE
    while hi - lo > 1:
        s = min(max(s, lo + 1), hi - 1)
        (lo, hi), last = ((s, hi) if estimate(s) <= target else (lo, s)), s
        if hi - lo <= 1:
            break
        # the next try: the last one moved along the slope between the nearest two tried so far
        near = sorted(estimates, key=lambda t: abs(t - last))[1:2]
        if near:
            slope = max((np.log(estimates[near[0]]) - np.log(estimates[last])) / (near[0] - last), 1e-3)
        move = (np.log(target) - np.log(estimates[last])) / slope
        if abs(move) < 0.35 and near:  # the last is the nearest setting, by far: no bracket needed
            lo = hi = last
            break
        s = last + int(np.round(move)) if abs(move) >= 1 else last + int(np.sign(move))
    if hi == top and estimate(top) <= target:
        # (lossless: the one setting beyond the ladder, for images its layer takes)
        candidates = [top, learned.LADDER] if lossless_fits(rgb) else [top]
    else:
        candidates = sorted({lo, hi}, key=lambda s: abs(estimate(s) - target))
    for s in candidates:
        size(s)
        if abs(size(s) - target) <= TOLERANCE / 3 * target:
            break
    if len(candidates) == 2 and candidates[1] not in made:
        other = candidates[1]
        if abs(estimate(other) - target) < abs(size(candidates[0]) - target):
            size(other)
    best = min(made, key=lambda s: (abs(len(made[s][0]) - target), s))
    data, encode_s = made[best]
    m = Match(layered.name, best, data, target, "", encode_s=encode_s)
    if not m.within_tolerance:
        if best == 0 and len(data) > target:
            m.note = f"cannot go below {len(data)} bytes (target {target})"
        elif best == learned.LADDER and len(data) < target:
            m.note = f"largest file is {len(data)} bytes (target {target})"
        else:
            m.note = f"no setting within 3 % (closest {len(data)} bytes for target {target})"
    return m


# The first setting tried: LAYERED_START for a target of LAYERED_START_BPP (about a photograph's), moved by
# LAYERED_SLOPE, the log of the file size per setting there (until two tries measure it).
LAYERED_START, LAYERED_START_BPP, LAYERED_SLOPE = 100, 1.8, 0.04


def lossless_fits(rgb: np.ndarray) -> bool:
    """Whether the lossless layer takes an image this large (`bitstream.MAX_LAYER_PIXELS_OF_KIND`)."""
    return rgb.shape[0] * rgb.shape[1] <= MAX_LAYER_PIXELS_OF_KIND[codec.PREDICTED]


def _named(m: Match, variant: str) -> Match:
    """The match, with the learned codec's variant it came from (what `learned.by_name` takes)."""
    m.variant = variant
    return m
