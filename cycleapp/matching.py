"""Matching a codec to a byte budget: the setting whose file is closest to a target size.

`compare` matches every other codec to the .cyc file's size this way; any codec with a `search`
range (see `codecs.Search`) can be matched.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import codecs as registry
from .codecs import Codec, CodecError

TOLERANCE = 0.03  # a match is within +-3 % of the target bytes


@dataclass
class Match:
    codec: str
    setting: float
    data: bytes
    target: int
    note: str  # empty when within tolerance
    variant: str = ""  # the learned codec's code size

    @property
    def within_tolerance(self) -> bool:
        return abs(len(self.data) - self.target) <= TOLERANCE * self.target


def match_size(codec: Codec, rgb: np.ndarray, target: int, max_tries: int = 24) -> Match:
    """The setting whose file size is closest to `target` bytes (bisection on the setting, or for a
    rate setting a correction by the size error). A codec that cannot encode the image (CodecError)
    gives a match without a file (or the closest file it made before failing), the reason in the note."""
    tried: dict[float, bytes] = {}

    def size_at(s: float) -> int:
        if s not in tried:
            tried[s] = codec.encode(rgb, s)
        return len(tried[s])

    try:
        _search(codec.search, size_at, tried, rgb, target, max_tries)
        failure = ""
    except CodecError as e:
        failure = str(e)
    if not tried:
        return Match(codec.name, codec.default, b"", target, failure)
    best = min(tried, key=lambda s: (abs(len(tried[s]) - target), s))
    match = Match(codec.name, best, tried[best], target,
                  f"the search stopped early: {failure}" if failure else "")
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
        while len(tried) < max_tries and hi - lo > (1 if integer else 0):
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
    trained for, so the offset stays small."""
    if target < 1:
        raise ValueError("the target size must be at least 1 byte")
    entries = registry.family(registry.LEARNED)
    natural = [len(e.encode(rgb)) for e in entries]
    entry = entries[int(np.argmin([abs(np.log(n / target)) for n in natural]))]
    m = match_size(entry, rgb, target)
    m.variant = entry.variant
    return m
