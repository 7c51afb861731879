"""Matching a codec to a byte budget: the setting whose file is closest to a target size.

`compare` matches every other codec to the .cyc file's size this way; any codec with a `search`
range (see `codecs.Search`) can be matched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import codecs as registry
from .codecs import Codec, CodecError
from .measure import timed

TOLERANCE = 0.03  # a match is within +-3 % of the target bytes


@dataclass
class Match:
    codec: str
    setting: float
    data: bytes
    target: int
    note: str  # empty when within tolerance
    variant: str = ""  # the learned codec's code size
    encode_s: float | None = None  # how long `data` took to encode (None: no file)

    @property
    def encoded(self) -> tuple[bytes, float] | None:
        """The file and its encode time, for `measure` (None when the codec made no file)."""
        return (self.data, self.encode_s) if self.data and self.encode_s is not None else None

    @property
    def within_tolerance(self) -> bool:
        return abs(len(self.data) - self.target) <= TOLERANCE * self.target


def match_size(codec: Codec, rgb: np.ndarray, target: int, max_tries: int = 24,
               known: dict | None = None) -> Match:
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
        _search(codec.search, size_at, tried, rgb, target, max_tries)
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
        search = codec.search
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
        integer = search.kind == "integer"
        # a real setting's file size can jump (JPEG XL's does): stop at 1/1000 of the range
        resolution = 1 if integer else (hi - lo) / 1000
        while len(tried) < max_tries and hi - lo > resolution:
            mid = (lo + hi) // 2 if integer else (lo + hi) / 2
            size = size_at(mid)
            if not integer and abs(size - target) <= close:
                break
            lo, hi = (mid, hi) if size <= target else (lo, mid)
        if integer:
            size_at(lo), size_at(hi)  # the bracket's ends are the candidates


def match_learned(rgb: np.ndarray, target: int) -> Match:
    """The learned codec at `target` bytes: the code size whose own file is nearest the target (in
    ratio), then its step offset matched to the target. A code size is best near the rate it was
    trained for, so the offset stays small.

    Files grow with the code size, so a bisection finds the first size whose own file reaches the
    target (two or three encodes of five); the nearer of it and the size below is matched, starting
    from the file already made."""
    if target < 1:
        raise ValueError("the target size must be at least 1 byte")
    entries = registry.family(registry.LEARNED)  # smallest code first
    made: dict[int, tuple[bytes, float]] = {}

    def natural(i: int) -> int:
        if i not in made:
            made[i] = timed(entries[i].encode, rgb, entries[i].default)
        return len(made[i][0])

    lo, hi = 0, len(entries) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if natural(mid) < target else (lo, mid)
    best = min((i for i in (lo - 1, lo) if i >= 0), key=lambda i: abs(np.log(natural(i) / target)))
    entry = entries[best]
    m = match_size(entry, rgb, target, known={entry.default: made[best]})
    m.variant = entry.variant
    return m
