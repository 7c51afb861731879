"""Rate control: the setting of a codec whose file is closest to a byte budget (`match_size`, for
any codec with a `search` range, `core.interface.Search`), and the learned codec's own, from its
smallest file to lossless (`match_learned`, what `--target-bytes` and `target_bytes=` run).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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
    # what `data` decodes to, where a quality search decoded it, which also timed it (decode_s)
    pixels: np.ndarray | None = field(default=None, repr=False)
    decode_s: float | None = None

    @property
    def encoded(self) -> tuple[bytes, float] | None:
        """The file and its encode time, for `measure` (None when the codec made no file)."""
        return (self.data, self.encode_s) if self.data and self.encode_s is not None else None

    @property
    def decoded(self) -> tuple[np.ndarray, float] | None:
        """The file's pixels and their decode time, for `measure` (None unless a decode was timed)."""
        return (self.pixels, self.decode_s) if self.pixels is not None and self.decode_s is not None else None

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


@dataclass
class Made:
    """What `match_learned` made for one image that does not depend on the target: a later target
    on the same image (a ladder of them, a changed size in the app) reuses it."""
    rgb: np.ndarray
    natural: dict = field(default_factory=dict)  # code size index -> its own file (bytes, seconds)
    finest: dict = field(default_factory=dict)  # FINEST -> the largest code size's finest file
    layered: object = None  # `learned.layered()` with this image's base, once made
    bridge: object = None  # `learned.bridge()` likewise
    lossless: dict = field(default_factory=dict)  # LADDER -> the lossless file (the same over any base)
    finest_pixels: np.ndarray | None = None  # the finest file's, once decoded


def match_learned(rgb: np.ndarray, target: int, made: Made | None = None) -> Match:
    """The learned codec at `target` bytes, from its smallest file to lossless.

    Up to the largest code size's own file: the code size whose own file is nearest the target (in
    ratio), then its step offset matched to the target (a code size is best near the rate it was
    trained for, so the offset stays small). Files grow with the code size, so a bisection finds
    the first size whose own file reaches the target (two or three encodes of five); the nearer of
    it and the size below is matched, starting from the file already made.

    Beyond it, as far as that code size reaches with its steps finer (`learned.FINEST`), the same;
    then the layered codec (`learned.layered`) and, for targets under BRIDGE_BELOW times its base, the
    bridge (`learned.bridge`, whose smallest file is that finest file), each's step matched to the
    target, and up to BRIDGE_REACH
    times that file (and an empty layer) the file itself; of these, the one with the smallest
    squared error within the budget (the target and the tolerance; if none is, the smallest). A
    target of a photograph's usual sizes (LAYERED_FIRST_BPP) far above the layered codec's base
    (CLEARLY_BEYOND) makes neither the code sizes' files nor that finest file. A target out of reach
    (below the smallest file, above the lossless one) gives the nearest file, and the match's note
    says so. `made`: what an earlier call on the same image made (`Made`), filled in by this one."""
    if target < 1:
        raise ValueError("the target size must be at least 1 byte")
    entries = learned.presets()  # smallest code first
    if not entries:
        raise ValueError("no checkpoints installed")
    if made is None or made.rgb is not rgb:
        made = Made(rgb)

    def natural(i: int) -> int:
        if i not in made.natural:
            made.natural[i] = timed(entries[i].encode, rgb, entries[i].default)
        return len(made.natural[i][0])

    top = entries[-1]
    finer = Search(top.default, learned.FINEST, "integer")  # its steps finer, up to FINEST

    def finest_bytes() -> int:
        if not made.finest:
            made.finest[learned.FINEST] = timed(top.encode, rgb, learned.FINEST)
        return len(made.finest[learned.FINEST][0])

    # a target of a photograph's usual sizes is most likely beyond the code sizes: the layered
    # codec's base is made first, and far above it (CLEARLY_BEYOND) nothing else
    likely_beyond = 8 * target >= LAYERED_FIRST_BPP * rgb.shape[0] * rgb.shape[1]
    if likely_beyond and isinstance(top, learned.CycleCodec):
        made.layered = made.layered or learned.layered().for_image(rgb)
        if target >= CLEARLY_BEYOND * made.layered.base_bytes():
            return _match_beyond(made, target, None)
    beyond = made.layered is not None and target > (1 + TOLERANCE) * finest_bytes()
    if not beyond and target > (1 + TOLERANCE) * natural(len(entries) - 1):
        if target <= (1 + TOLERANCE) * finest_bytes():  # the largest code size reaches it
            known = {top.default: made.natural[len(entries) - 1], **made.finest}
            return _named(match_size(top, rgb, target, known=known, search=finer), top.variant)
        beyond = True
    if beyond:
        made.layered = made.layered or learned.layered().for_image(rgb)
        data, encode_s = made.finest[learned.FINEST]
        return _match_beyond(made, target,
                             _named(Match(top.name, learned.FINEST, data, target, "", encode_s=encode_s), top.variant))
    lo, hi = 0, len(entries) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if natural(mid) < target else (lo, mid)
    best = min((i for i in (lo - 1, lo) if i >= 0), key=lambda i: abs(np.log(natural(i) / target)))
    entry = entries[best]
    return _named(match_size(entry, rgb, target, known={entry.default: made.natural[best]}), entry.variant)


LAYERED_FIRST_BPP = 1.0  # targets from here up start with the layered codec's base (speed only)
# The finest file itself is a candidate up to this times its bytes and an empty layer's (the second
# term matters only on small images, where it is most of a layer).
BRIDGE_REACH = 1.5
# The bridge only for targets under this many times the layered codec's base and an empty layer. At
# the same bytes (RD curves of both over each photo, a scratch script at release 0.11.1), at 3 times
# the bridge was worse on 9 of 11 photos (Kodak's 1, 4, 7, 14, 16, 21, 23, 4 of CLIC 2025 val: by
# 0.03 to 0.30 dB) and better on 2 (by 0.07 and 0.02 dB); above 4 times worse on all but one, by up
# to 0.57 dB, that one at most 0.016 dB better. Not trying it saves a second base and its search
# (about a third of a 2K photo's search at 2 bpp) and half the search's memory.
BRIDGE_BELOW = 3
# The largest code size's finest file was 1.5 to 2.3 times the layered codec's base on 8 training
# photos: a target this many times that base is beyond that file's reach (speed only: not made).
CLEARLY_BEYOND = 4


def _match_beyond(made: Made, target: int, finest: Match | None) -> Match:
    """`match_learned` beyond the largest code size's finest file (`finest`, None if far beyond):
    the layered codec (its base made) and the bridge, and near that file the file itself (on a small
    image a layer's tables cost more than they gain), the one with the smallest squared error within
    the budget. Which base is better depends on the photo just beyond that file; from BRIDGE_BELOW
    times the smaller base it is that one (nearly) everywhere, and the bridge is not tried."""
    rgb, layered = made.rgb, made.layered
    if target >= BRIDGE_BELOW * layered.base_bytes():
        candidates = [_named(match_layered(layered, rgb, target, made.lossless), learned.LAYERED)]
    else:
        # the bridge's base made beside the first base's search
        with ThreadPoolExecutor(1) as pool:
            bridge = codec.submit_as_caller(pool, learned.bridge().for_image, rgb) if made.bridge is None else None
            first = _named(match_layered(layered, rgb, target, made.lossless), learned.LAYERED)
            made.bridge = bridge = made.bridge or bridge.result()
        candidates = [first, _named(match_layered(bridge, rgb, target, made.lossless, start=first.setting),
                                    learned.BRIDGE)]
    # (an empty layer's bytes, its tables, a small image's notable cost, estimated only if they matter)
    if finest is not None and (target <= BRIDGE_REACH * len(finest.data) or target <= BRIDGE_REACH * (
            len(finest.data) + layered.estimate(0) - layered.base_bytes())):
        candidates.append(finest)
    fit = [c for c in candidates if len(c.data) <= (1 + TOLERANCE) * target]
    if not fit:
        m = min(candidates, key=lambda c: len(c.data))
    else:  # (errors are made only where there is a choice)
        m = fit[0] if len(fit) == 1 else min(fit, key=lambda c: _error(c, made))
    if not m.within_tolerance:
        if m.setting == learned.LADDER and len(m.data) < target:
            m.note = f"the lossless file is {len(m.data)} bytes, the largest this codec makes (target {target})"
        elif any(c.within_tolerance for c in candidates):
            m.note = f"no better file within 3 % (this one {len(m.data)} bytes for target {target})"
        elif not m.note:  # (the finest file, made without a search)
            m.note = f"no file within 3 % (the best within the budget {len(m.data)} bytes for target {target})"
    return m


def _error(m: Match, made: Made) -> float:
    """The squared error of a candidate's file: none for the lossless one (bit-exact by
    construction, as the suite checks); else its pixels as its encoder makes them (the layered
    codec's and the bridge's, `LayeredCodec.pixels_at`), or the finest file's, decoded once per image."""
    layered = {learned.LAYERED: made.layered, learned.BRIDGE: made.bridge}.get(m.variant)
    if layered is not None and m.setting == learned.LADDER:
        return 0.0
    if layered is not None:
        pixels = layered.pixels_at(m.setting)
    else:
        if made.finest_pixels is None:
            made.finest_pixels = codec.decode(m.data)
        pixels = made.finest_pixels
    return float(np.sum((pixels.astype(np.int64) - made.rgb) ** 2))


def match_layered(layered, rgb: np.ndarray, target: int, lossless: dict | None = None,
                  start: int | None = None) -> Match:
    """The layered codec's setting (its base made, `LayeredCodec.for_image`) whose file is closest to
    `target`, as `match_size` finds it, in few encodes: the search runs on the estimated sizes of
    the transform-domain settings (`LayeredCodec.estimate`, no layer coded), a secant on the log of
    the size (it is about linear in the setting: in the log of the step), bracketed; then only the
    settings either side of the target are coded, the nearer first (the estimate is within about
    0.1 %, a setting apart is about 4 %). `lossless`: {LADDER: the lossless file} if made already
    (it is the same over any base), filled in when this search makes it. `start`: the first setting
    tried (by default `first_try`'s, from the target's bpp and the base's; another base's match at
    the same target is a nearer one: two bases' steps for a size differ by a setting or less)."""
    made: dict[int, tuple[bytes, float]] = {}
    estimates: dict[int, float] = {}
    lossless = {} if lossless is None else lossless

    def size(s: int) -> int:
        if s not in made:
            if s == learned.LADDER and s not in lossless:
                lossless[s] = timed(layered.encode, rgb, s)
            if s == learned.LADDER:
                made[s] = lossless[s]
            else:
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
    area = rgb.shape[0] * rgb.shape[1]
    first, slope = first_try(8 * target / area, 8 * layered.base_bytes() / area)
    s = first if start is None else start
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


def first_try(bpp: float, base_bpp: float) -> tuple[int, float]:
    """The layered codec's first setting to try for a target (in bpp) over a base (the bpp of its
    file with an empty layer: a busier photo has a larger base and needs coarser steps), and the
    log of the file's size per setting there, until two tries measure it (`FIRST_TRY`)."""
    a, b, c, d = FIRST_TRY
    x = np.log(bpp)
    return int(round(a + b * x + c * x * x + d * np.log(base_bpp))), 1 / max(b + 2 * c * x, 10.0)


# The setting whose file has a bpp of e^x over a base of e^y bpp, about a + b x + c x^2 + d y, with
# (a, b, c, d) = FIRST_TRY: least squares over the layered codec's estimated sizes at 14 settings on
# 14 CID22 and 9 CLIC training photos (0.6 to 8 bpp): off by 5.6 settings rms there, 4.9 on Kodak
# and CLIC 2025 val, where the target's bpp alone (the rule before 0.11.1) was off by 15.6 (speed
# only: two or three tries for a 2K photo's target instead of three or four).
FIRST_TRY = (53.76, 22.42, 3.15, -21.22)


def lossless_fits(rgb: np.ndarray) -> bool:
    """Whether the lossless layer takes an image this large (`bitstream.MAX_LAYER_PIXELS_OF_KIND`)."""
    return rgb.shape[0] * rgb.shape[1] <= MAX_LAYER_PIXELS_OF_KIND[codec.PREDICTED_ALONE]


def _named(m: Match, variant: str) -> Match:
    """The match, with the learned codec's variant it came from (what `learned.by_name` takes)."""
    m.variant = variant
    return m
